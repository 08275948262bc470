"""The ``corral`` command line: PM2's verbs and flags.

Only argparse, json, socket and the small protocol modules are imported up
front; config loading and anything heavier are imported inside the command
that needs them, so ``corral ls`` stays fast.  ``start``'s key options come
from the KEYS table (:mod:`corral.cli.keyflags`) and are built only for start.

Modules: ``parser`` (the verbs), ``start``, ``actions`` (state-changing verbs,
one connection each), ``views`` (everything else), ``pm2`` (PM2's CLI, verb
and flag, mapped to Corral's: docs/pm2.md).

Exit codes: 0 done; 1 nothing matched or the operation failed; 2 usage or
config error.  Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys

from corral.core.errors import CorralError, report

START_VERBS = {"start"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except CorralError as e:
        return report(e)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        from corral.cli.common import quiet_stdout

        return quiet_stdout()
    except OSError as e:
        # a lost, reset or refused connection, or a file the command could not use
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        sys.stderr.write(f"corral: error: {e.strerror or type(e).__name__}{where}\n")
        return 1
    except Exception as e:  # the last line of defence: a person never sees a traceback
        if os.environ.get("CORRAL_DEBUG"):
            raise
        sys.stderr.write(f"corral: internal error: {type(e).__name__}: {e} (CORRAL_DEBUG=1 shows the traceback)\n")
        return 1


def _main(argv: list[str]) -> int:
    if argv[:1] == ["runtime"]:
        from corral.daemon.runtime import main as run

        return run(argv[1:])
    if argv[:1] == ["ecosystem"]:
        from corral.tools.ecosystem import main as ecosystem_main

        return ecosystem_main(argv)
    if argv[:1] == ["dashboard"]:
        from corral.dashboard.__main__ import main as dashboard_main

        return dashboard_main(argv[1:])
    if argv[:1] in (["export"], ["startup"], ["unstartup"]):
        from corral.tools.export import main as export_main

        return export_main(argv)
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    from corral.cli.parser import build_parser

    full_start = bool(START_VERBS & set(argv[:1]))
    if full_start:
        from corral.cli.keyflags import glue_dash_values

        argv = glue_dash_values(argv)
    parser = build_parser(full_start=full_start)
    ns = parser.parse_args(argv)
    if not getattr(ns, "func", None):
        parser.print_help()
        return 2
    if script_args:
        if ns.cmd != "start":
            parser.error("'--' arguments are only for start")
        ns.script_args = list(getattr(ns, "script_args", []) or []) + script_args
    return int(ns.func(ns))


def runtime_main() -> int:
    from corral.daemon.runtime import main as run

    return run()
