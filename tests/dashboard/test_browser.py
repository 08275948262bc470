"""The dashboard in real Chromium (Debian's package, driven by Playwright): log in with the URL,
watch the table follow a kill -9 live, the charts, the log search, actions, read-only mode and
the lost-connection banner. One browser for the module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Corral, wait_until
from tests.dashboard.helpers import Dashboard, kill9, wait_online

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]

sync_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, dash: Dashboard) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(dash.login_url())
    pg.wait_for_url(dash.base + "/")
    try:
        yield pg
    finally:
        ctx.close()
    assert not errors, errors  # no script error on any page


def row_pid(page: Any, iid: int) -> str:
    return str(page.locator(f'tr[data-id="{iid}"] td.pid').inner_text())


def test_login_with_the_url_shows_the_apps_live(page: Any, dash: Dashboard) -> None:
    page.wait_for_selector('tr[data-name="web"]')
    assert page.locator('tr[data-name="web"]').count() == 2
    assert page.locator('tr[data-name="api"]').count() == 1
    page.wait_for_selector('#conn[data-state="live"]')
    assert page.locator("#banner").is_hidden()


def test_a_kill_9_shows_up_without_reloading(page: Any, home: Corral) -> None:
    victim = wait_online(home, "web", 2)[0]
    page.wait_for_selector(f'tr[data-id="{victim["id"]}"]')
    assert row_pid(page, victim["id"]) == str(victim["pid"])
    page.evaluate("() => { window.marker = 'same page'; }")
    kill9(victim["pid"])
    page.wait_for_function(
        "([id, pid, restarts]) => { const r = document.querySelector(`tr[data-id='${id}']`);"
        " return r && r.querySelector('td.pid').textContent !== String(pid) && Number(r.querySelector('td.restarts').textContent) > restarts; }",
        arg=[victim["id"], victim["pid"], victim["restarts"]],
        timeout=15000,
    )
    assert page.evaluate("() => window.marker") == "same page"  # followed live, not reloaded


def test_app_page_chart_draws_points_and_lists_events(page: Any, dash: Dashboard, home: Corral) -> None:
    page.goto(dash.base + "/apps/web")
    page.wait_for_function("() => window.corralCharts && window.corralCharts.mem && window.corralCharts.mem.data[0].length >= 3", timeout=30000)
    series = page.evaluate("() => window.corralCharts.mem.data.slice(1).map(s => s.filter(v => v !== null && v > 0).length)")
    assert len(series) == 2 and all(n >= 1 for n in series)  # one line per instance, with points
    canvas_drawn = page.evaluate(
        "() => { const c = document.querySelector('#chart-mem canvas'); const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let coloured = 0; for (let i = 0; i < d.length; i += 4) if (d[i+3] && (Math.abs(d[i]-d[i+2]) > 60)) coloured++; return coloured; }"
    )
    assert canvas_drawn > 20  # the series' coloured strokes are on the canvas
    assert "DB_PASSWORD" in page.locator("#config").inner_text() and "hunter2" not in page.content()


def test_log_tail_search_and_stream_filter(page: Any, dash: Dashboard) -> None:
    page.goto(dash.base + "/apps/web")
    page.wait_for_selector("#log .line")
    page.fill("#log-search", "alert")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length >= 3 && [...document.querySelectorAll('#log .line .msg')].every(m => m.textContent.includes('alert'))", timeout=15000)
    page.fill("#log-search", "")
    page.uncheck("#log-out")
    page.wait_for_function("() => document.querySelectorAll('#log .line').length >= 2 && [...document.querySelectorAll('#log .line')].every(l => l.classList.contains('err'))", timeout=15000)


def test_restart_and_scale_from_the_ui(page: Any, dash: Dashboard, home: Corral) -> None:
    before = {p["id"]: p["pid"] for p in wait_online(home, "web", 2)}
    page.goto(dash.base + "/apps/web")
    page.wait_for_selector('tr[data-name="web"]')
    page.click('#actions button[data-action="restart"]')
    page.wait_for_selector("dialog#confirm[open]")
    page.click("#confirm-cancel")  # cancelled: nothing happens
    page.click('#actions button[data-action="restart"]')
    page.click("#confirm-ok")
    page.wait_for_function(
        "(before) => { const rows = [...document.querySelectorAll('tr[data-name=web]')];"
        " return rows.length === 2 && rows.every(r => r.dataset.status === 'online' && before[r.dataset.id] !== undefined && r.querySelector('td.pid').textContent !== String(before[r.dataset.id])); }",
        arg={str(k): v for k, v in before.items()},
        timeout=20000,
    )
    assert all(p["pid"] != before[p["id"]] for p in wait_online(home, "web", 2))
    page.fill("#scale-count", "3")
    page.click("#scale-apply")
    page.wait_for_function("() => document.querySelectorAll('tr[data-name=web][data-status=online]').length === 3", timeout=20000)
    wait_online(home, "web", 3)
    page.fill("#scale-count", "2")
    page.click("#scale-apply")
    page.click("#confirm-ok")  # scaling down asks first
    page.wait_for_function("() => document.querySelectorAll('tr[data-name=web]').length === 2", timeout=20000)
    wait_online(home, "web", 2)


def test_read_only_hides_every_action(browser: Any, home: Corral) -> None:
    ro = Dashboard(home, "--read-only").start()
    ctx = browser.new_context()
    try:
        pg = ctx.new_page()
        pg.goto(ro.login_url())
        pg.wait_for_selector('tr[data-name="web"]')
        assert pg.locator("#read-only").is_visible()
        assert pg.locator("button").count() == 0 or pg.locator("button:visible").count() == 0
        pg.goto(ro.base + "/apps/web")
        pg.wait_for_selector('tr[data-name="web"]')
        assert pg.locator("#actions").count() == 0 and pg.locator(".row-actions").count() == 0
    finally:
        ctx.close()
        ro.stop()


def test_a_page_that_loses_the_server_says_so_and_reconnects(browser: Any, home: Corral) -> None:
    d = Dashboard(home).start()
    ctx = browser.new_context()
    try:
        pg = ctx.new_page()
        pg.goto(d.login_url())
        pg.wait_for_selector('#conn[data-state="live"]')
        d.stop()
        pg.wait_for_selector("#banner:not([hidden])", timeout=15000)
        assert "lost" in pg.locator("#banner").inner_text()
        d.start()  # same port, same token
        pg.wait_for_selector('#conn[data-state="live"]', timeout=20000)
        wait_until(lambda: pg.locator("#banner").is_hidden(), timeout=10)
        pg.wait_for_selector('tr[data-name="web"]')
    finally:
        ctx.close()
        d.stop()
