#!/usr/bin/env python3
"""Create the web app's schema, once, before its instances start: ``python migrate.py``.

A one-shot app in ecosystem.toml (``autorestart = false``) that ``webapp`` depends on
(``depends_on = ["migrate"]``, i.e. ``completed_successfully``): Corral runs it to the
end first, and starts the 4 web instances only once it exited 0; the Kubernetes export
makes it the pod's init container. Idempotent: tables that exist are kept (on
PostgreSQL under an advisory lock, so two runs at once do not collide).

Exit status: 0 schema ready; 1 the database refused (the message says why);
2 a bad setting (DATABASE_URL...).
"""

from __future__ import annotations

import sys

from webapp.db import Database
from webapp.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as e:
        print(f"migrate: {e}", file=sys.stderr)
        return 2
    try:
        db = Database(settings)
    except Exception as e:  # e.g. no driver installed for the URL's database
        print(f"migrate: cannot open the database: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    try:
        db.create_all()
    except Exception as e:  # the driver's own error types vary by backend
        print(f"migrate: cannot create the schema on {db.backend}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        db.engine.dispose()
    print(f"migrate: schema ready ({db.backend})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
