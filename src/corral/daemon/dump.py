"""The dump file (``save`` / ``resurrect``): every app's definition, inherited
environment and whether it was running.

Written to a temporary file, fsynced, then renamed over ``dump.json``; the
previous dump is kept as ``dump.json.bak`` and read when the dump is missing
or corrupt.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.core.appspec import AppSpec, to_wire
from corral.core.statemachine import Status
from corral.daemon.dispatch import RequestError

if TYPE_CHECKING:
    from corral.daemon.instance import App

FIELDS = frozenset(AppSpec.__struct_fields__)
RUNNING = (Status.ONLINE, Status.LAUNCHING, Status.WAITING_RESTART)


def entries(apps: Iterable[App]) -> list[dict[str, Any]]:
    return [
        {"config": to_wire(app.spec), "base_env": app.base_env, "running": any(i.state.status in RUNNING for i in app.instances)}
        for app in apps
    ]


def config_of(entry: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """An entry's app as the request boundary takes it. A dump is plain data (the spec as
    :func:`corral.core.appspec.to_wire` writes it; older files hold the normalised dict
    of the same keys): keys since removed are dropped with a note, keys since added
    take their defaults, and the rest is checked like any request (``registry.decode_app``)."""
    config: dict[str, Any] = entry["config"]
    unknown = sorted(set(config) - FIELDS)
    if unknown:
        log(f"[daemon] dump: app {config.get('name')!r}: keys no longer known ignored: {', '.join(unknown)}")
        config = {k: v for k, v in config.items() if k in FIELDS}
    return config


def write(path: Path, apps: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    data = json.dumps({"version": 1, "saved_at": time.time(), "apps": apps}, indent=1).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists():
        os.replace(path, path.with_suffix(".json.bak"))
    os.replace(tmp, path)


def read(path: Path, log: Callable[[str], None]) -> tuple[list[dict[str, Any]], str]:
    """The saved apps and the file they came from; RequestError when neither file is usable."""
    errors = []
    for candidate in (path, path.with_suffix(".json.bak")):
        try:
            data = json.loads(candidate.read_bytes())
            apps = data["apps"]
            if not isinstance(apps, list) or not all(isinstance(a, dict) and isinstance(a.get("config"), dict) for a in apps):
                raise ValueError("bad shape")
            return apps, str(candidate)
        except FileNotFoundError:
            errors.append(f"{candidate}: missing")
        except (ValueError, KeyError, TypeError) as e:
            errors.append(f"{candidate}: corrupt ({e})")
            log(f"[daemon] dump {candidate} is corrupt: {e}")
    raise RequestError("no_dump", "nothing to resurrect: " + "; ".join(errors))
