"""Make the screenshots in docs/img/ for docs/dashboard.md: a real daemon, real apps, real Chromium.

    .venv/bin/python -m tests.dashboard.screenshots [docs/img]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tests.conftest import Corral, ecosystem, wait_until, write
from tests.dashboard.helpers import TICKER, Dashboard, kill9, wait_online

CRASHER = """
import sys, time
print("starting up", flush=True)
time.sleep(4)
print("lost the database connection", file=sys.stderr, flush=True)
sys.exit(3)
"""

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        c = Corral(root / "home", root / "work")
        (root / "work").mkdir()
        write(root / "work" / "ticker.py", TICKER)
        write(root / "work" / "crasher.py", CRASHER)
        write(
            root / "work" / "ecosystem.toml",
            ecosystem(
                {"name": "web", "script": "ticker.py", "instances": 3, "max_memory_restart": "300M", "env": {"DATABASE_PASSWORD": "hunter2", "LOG_LEVEL": "info"}},
                {"name": "worker", "script": "ticker.py", "namespace": "jobs", "max_memory_restart": "300M"},
                {"name": "importer", "script": "crasher.py", "restart_delay": 1000},
            ),
        )
        c.run("start", "ecosystem.toml")
        d = Dashboard(c).start()
        try:
            web = wait_online(c, "web", 3)
            wait_until(lambda: c.proc("importer")["restarts"] >= 1, timeout=30)
            kill9(web[1]["pid"])
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = b.new_page(viewport={"width": 1280, "height": 640})
                page.goto(d.login_url())
                page.wait_for_selector('tr[data-name="web"]')
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "dashboard-processes.png"))
                page.set_viewport_size({"width": 1280, "height": 900})
                page.goto(d.base + "/apps/web")
                page.wait_for_function("() => window.corralCharts.cpu && window.corralCharts.cpu.data[0].length >= 8", timeout=60000)
                page.fill("#log-search", "alert")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(out / "dashboard-app.png"), full_page=True)
                page.click('#actions button[data-action="stop"]')
                page.wait_for_selector("dialog#confirm[open]")
                page.screenshot(path=str(out / "dashboard-confirm.png"))
                page.click("#confirm-cancel")
                b.close()
        finally:
            d.stop()
            c.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
