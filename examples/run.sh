#!/usr/bin/env bash
# `make run`: the reference web app under corral-runtime, production env, SQLite by default.
# Ctrl-C stops every instance gracefully and exits.
set -euo pipefail
ROOT="$1"
export CORRAL_HOME="$2"
cd "$ROOT/examples/webapp"
cat <<MSG
Starting the reference web app under corral-runtime (4 instances sharing 127.0.0.1:8000).
  pages:     http://127.0.0.1:8000/
  health:    curl http://127.0.0.1:8000/api/health
  status:    CORRAL_HOME=$CORRAL_HOME $ROOT/.venv/bin/corral ls
  logs:      examples/webapp/logs/  (JSON), or: CORRAL_HOME=$CORRAL_HOME $ROOT/.venv/bin/corral logs webapp
  database:  SQLite in examples/webapp/data/ (set DATABASE_URL=postgresql://... for PostgreSQL)
  dashboard: CORRAL_HOME=$CORRAL_HOME $ROOT/.venv/bin/corral dashboard   (web UI on 127.0.0.1:9615; it prints its login URL)
Ctrl-C stops it.
MSG
exec "$ROOT/.venv/bin/corral-runtime" ecosystem.toml --only webapp --env production
