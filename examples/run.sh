#!/usr/bin/env bash
# `make run`: the reference web app under Corral (SQLite by default), in the foreground.
# Ctrl-C stops following the logs, then stops the app and the daemon.
set -euo pipefail
ROOT="$1"
export CORRAL_HOME="$2"
CORRAL="$ROOT/.venv/bin/corral"
cd "$ROOT/examples/webapp"
"$CORRAL" start ecosystem.toml --env production
trap '"$CORRAL" kill' EXIT
echo
"$CORRAL" ls
cat <<MSG

  The web app runs under Corral (home: $CORRAL_HOME), SQLite in examples/webapp/data/.
    http://127.0.0.1:8000/              pages (instance 0; instance 1 is on :8001)
    curl http://127.0.0.1:8000/api/health
    CORRAL_HOME=$CORRAL_HOME $CORRAL ls | describe webapp | logs webapp
  Following the logs now; Ctrl-C stops everything.

MSG
"$CORRAL" logs webapp --lines 5 || true
