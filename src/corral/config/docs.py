"""Generate ``docs/config.md`` from :data:`corral.config.keys.KEYS`.

The reference and the validator are built from the same table, so they cannot
drift apart (a test checks that the committed file is what this prints)::

    python -m corral.config.docs > docs/config.md
    python -m corral.config.docs --write      # the same, in place
    python -m corral.config.docs --check      # exit 1 if docs/config.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from corral.config.keys import KEYS, NODE_ONLY_KEYS, Key, all_aliases
from corral.config.loader import DEFAULT_FILENAMES, IGNORED_TOP_LEVEL

DOCS_PATH = Path(__file__).resolve().parents[3] / "docs" / "config.md"

# Defaults that read better as words than as values.
_DEFAULT_TEXT: dict[str, str] = {
    "name": "the script's file name without extension",
    "script": "required",
    "interpreter": "by extension (see above)",
    "cwd": "the ecosystem file's folder",
    "out_file": "`<home>/logs/<name>-out.log`",
    "error_file": "`<home>/logs/<name>-error.log`",
    "log_file": "off",
    "log_date_format": "none",
    "exp_backoff_restart_delay": "off",
    "max_memory_restart": "off",
    "cron_restart": "off",
    "pid_file": "none",
    "uid": "the daemon's user",
    "gid": "the daemon's group",
    "increment_var": "none",
    "port": "none",
    "health": "none",
}

# The same two apps in each format; tests load all three and compare.
EXAMPLE_TOML = """\
# ecosystem.toml
[[apps]]
name = "web"
script = "web.py"
args = ["--log-level", "info"]
instances = "max"                 # one per CPU
exec_mode = "cluster"
listen = "0.0.0.0:8000"           # bound once by the daemon, shared by every instance
max_memory_restart = "500M"
kill_timeout = "10s"
out_file = "logs/web.out.log"     # relative paths: from this file's folder

[apps.env]
APP_ENV = "development"
WORKERS = 2                       # any scalar becomes a string: "2"

[apps.env_production]             # merged over env by `corral start --env production`
APP_ENV = "production"

[[apps]]
name = "worker"
script = "worker.py"
interpreter_args = ["-X", "dev"]
restart_delay = "2s"
exp_backoff_restart_delay = 100
stop_exit_codes = [0]

[apps.env_production]
QUEUE = "jobs"
"""

EXAMPLE_YAML = """\
# ecosystem.yaml
apps:
  - name: web
    script: web.py
    args: --log-level info        # a string is split like a shell would
    instances: max
    exec_mode: cluster_mode       # PM2's spelling works too
    listen: 0.0.0.0:8000
    max_memory_restart: 500M
    kill_timeout: 10000           # ms
    out_file: logs/web.out.log
    env:
      APP_ENV: development
      WORKERS: 2
    env_production:
      APP_ENV: production

  - name: worker
    script: worker.py
    node_args: -X dev             # PM2's name for interpreter_args
    restart_delay: 2s
    exp_backoff_restart_delay: 100
    stop_exit_codes: 0
    env_production:
      QUEUE: jobs
"""

EXAMPLE_JS = """\
// ecosystem.config.js, as written for PM2: Corral reads it as it is.
module.exports = {
  apps: [
    {
      name: 'web',
      script: 'web.py',
      args: ['--log-level', 'info'],
      instances: 0,                 // 0 = one per CPU, like 'max'
      exec_mode: 'cluster',
      listen: '0.0.0.0:8000',
      max_memory_restart: '500M',
      kill_timeout: 10000,
      output: 'logs/web.out.log',   // PM2's alias of out_file
      env: { APP_ENV: 'development', WORKERS: 2 },
      env_production: { APP_ENV: 'production' },
    },
    {
      name: 'worker',
      script: 'worker.py',
      interpreterArgs: '-X dev',    // camelCase works, as in PM2
      restart_delay: '2s',
      exp_backoff_restart_delay: 100,
      stop_exit_codes: [0],
      env_production: { QUEUE: 'jobs' },
      vizion: false,                // Node-only: ignored with a notice
    },
  ],
  deploy: { production: { user: 'app', host: 'example.com' } },  // ignored with a notice
};
"""

CHECK_JSON_EXAMPLE: dict[str, Any] = {
    "file": "/srv/app/ecosystem.config.js",
    "format": "js",
    "env": "production",
    "valid": True,
    "cpus": 4,
    "apps": [
        {
            "name": "worker",
            "script": "/srv/app/worker.py",
            "interpreter": "/srv/app/.venv/bin/python",
            "command": ["/srv/app/.venv/bin/python", "-X", "dev", "/srv/app/worker.py"],
            "instances": 1,
            "instances_config": 1,
            "exec_mode": "fork",
            "cwd": "/srv/app",
            "env": {"QUEUE": "jobs"},
            "env_names": ["production"],
            "out_file": "/home/me/.corral/logs/worker-out.log",
            "restart_delay": 2000,
            "max_memory_restart": None,
            "...": "every other key of the table above, normalised",
            "set": ["name", "script", "interpreter_args", "restart_delay"],
            "aliases": {"interpreterArgs": "interpreter_args"},
            "ignored": {"vizion": "version metadata is not collected"},
            "unknown": {},
        }
    ],
    "ignored": {"deploy": "Corral does not deploy"},
    "warnings": [],
    "notices": [
        "/srv/app/ecosystem.config.js: the 'deploy' block is ignored (Corral does not deploy)"
    ],
}

CHECK_JSON_ERROR_EXAMPLE: dict[str, Any] = {
    "file": "/srv/app/ecosystem.toml",
    "valid": False,
    "error": {
        "file": "/srv/app/ecosystem.toml",
        "app": "web",
        "key": "max_restarts",
        "message": "expected a whole number, got 'many'",
        "text": "/srv/app/ecosystem.toml: app 'web': key 'max_restarts': expected a whole number, got 'many'",
    },
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(key: Key) -> str:
    if key.name in _DEFAULT_TEXT:
        return _DEFAULT_TEXT[key.name]
    value = key.default
    if value is None:
        return "none"
    if value == [] or value == {}:
        return "empty"
    if key.type_doc == "duration":
        return f"`{value}` ms"
    return f"`{json.dumps(value)}`"


def _aliases(key: Key) -> str:
    names = all_aliases(key)
    return ", ".join(f"`{a}`" for a in names) if names else ""


def _status(key: Key) -> str:
    if key.status == "active":
        return "active"
    if key.status.startswith("parsed"):
        return f"**not yet active**: {key.status}"
    return f"**partly active**: {key.status}"


def _range(key: Key) -> str:
    if key.bounds is None:
        return ""
    b = key.bounds
    text = f"{b.show(b.low)} to {b.show(b.high)}"
    return f"{text} {b.note}" if b.note else text


def _flags(key: Key) -> str:
    out = []
    for flag in key.flags:
        names = " ".join(f"`{n}`" for n in flag.names)
        if flag.kind == "switch":
            names += f" (= `{json.dumps(flag.const)}`)"
        out.append(names)
    return ", ".join(out)


def keys_table() -> str:
    lines = [
        "| Key | Type | Default | Range | `corral start` flag | Aliases | Status | Description |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in KEYS:
        lines.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    f"`{key.name}`",
                    key.type_doc,
                    _default(key),
                    _range(key),
                    _flags(key),
                    _aliases(key),
                    _status(key),
                    key.doc,
                )
            )
            + " |"
        )
    return "\n".join(lines)


def ignored_table() -> str:
    lines = ["| Key | Why it is ignored |", "| --- | --- |"]
    for name, why in sorted(NODE_ONLY_KEYS.items(), key=lambda kv: kv[0].lower()):
        lines.append(f"| `{name}` | {_cell(why)} |")
    for name, why in IGNORED_TOP_LEVEL.items():
        lines.append(f"| `{name}` (top level) | {_cell(why)} |")
    return "\n".join(lines)


def render() -> str:
    """The whole of docs/config.md."""
    inactive = [k.name for k in KEYS if k.status != "active"]
    filenames = "\n".join(f"{i}. `{n}`" for i, n in enumerate(DEFAULT_FILENAMES, 1))
    parts = [
        "# Ecosystem files",
        "",
        "<!-- Generated by `python -m corral.config.docs --write` from corral/config/keys.py."
        " Do not edit by hand: a test fails when this file and the generator disagree. -->",
        "",
        "An ecosystem file declares the apps Corral runs: `corral start` starts every app in it,"
        " `corral start FILE --only web,worker` some of them, and `corral start FILE --env production`"
        " merges each app's `env_production` over its `env`. Corral reads PM2's ecosystem files as"
        " they are: PM2's key names, aliases and value forms are accepted, and PM2 keys that only"
        " mean something for Node are ignored with a notice.",
        "",
        "## File formats",
        "",
        "| Format | File names | Notes |",
        "| --- | --- | --- |",
        "| TOML | `ecosystem.toml`, any `*.toml` | Corral's own format: `[[apps]]` tables. |",
        "| YAML | `*.yaml`, `*.yml` | Same shape as JSON. |",
        "| JSON | `*.json`, PM2's `process.json` and `pm2.json` | Comments and trailing commas are"
        " accepted, as PM2 evaluates JSON files as JavaScript. |",
        "| PM2 JavaScript | `ecosystem.config.js`, `.cjs`, `.mjs` | Object literals are read without"
        " Node; anything computed (`process.env`, function calls...) is evaluated with `node`"
        " when it is installed. |",
        "",
        "`corral start` with no file looks in the current folder for, in this order:",
        "",
        filenames,
        "",
        "## File shapes",
        "",
        "All of these are accepted, in every format:",
        "",
        "- `{apps: [app, app, ...]}`: PM2's shape, and `[[apps]]` in TOML;",
        "- `{apps: app}`: `apps` as a single object instead of a list;",
        "- `[apps.NAME]` tables in TOML (`{apps: {NAME: app}}`): the table's name is the app's name;",
        "- a top-level list of apps, as in PM2's `process.json`;",
        "- one bare app object (a table with `script`).",
        "",
        "A top-level `deploy` block is accepted and ignored with a notice; any other top-level key"
        " next to `apps` is ignored with a warning.",
        "",
        "## App keys",
        "",
        "Every key below is also accepted in camelCase (`maxMemoryRestart`, `errorFile`...), as PM2"
        " does. When one key is written under several names, the canonical name wins, then the"
        " first alias written; a warning names the others.",
        "",
        "Value forms:",
        "",
        "- **duration**: milliseconds (`1500`), or a number with a unit: `250ms`, `10s`, `2m`, `1h`,"
        " `1d`.",
        "- **size**: bytes (`524288000`), or `K`, `M`, `G`, `T` with an optional `B`/`iB`"
        " (`500M`, `1G`, `1.5GB`); like PM2 the units are binary: 1K = 1024 bytes.",
        "- **instances**: a number, `\"4\"`, `max` or `0` (one per CPU), `-N` (CPUs minus N, at"
        " least 1). The symbolic form is kept, so a saved config moves between machines.",
        "- **exec_mode**: `fork`, `fork_mode`, `cluster` or `cluster_mode`.",
        "- **env**: a table; any scalar value becomes a string (`2` -> `\"2\"`, `true` ->"
        " `\"true\"`, null -> `\"\"`). `env_<name>` tables are validated the same way and merged"
        " over `env` with `--env <name>`.",
        "- **log files**: `/dev/null`, `NULL` or `false` switch a file off; relative paths are"
        " resolved against the ecosystem file's folder (not the app's `cwd`), `~` is expanded.",
        "- **interpreter**: by extension when not set: `.py` -> the python of the active"
        " virtualenv (`$VIRTUAL_ENV`), else of the virtualenv Corral itself runs from, else"
        " `python3`; `.js`/`.cjs`/`.mjs` -> `node`; `.sh` ->"
        " `bash`; `.rb` -> `ruby`; `.php` -> `php`; `.pl` -> `perl`; anything else (and a program"
        " found on PATH, such as `uvicorn`) runs directly and must be executable. `none` runs the"
        " script directly. With `interpreter_args` ending in `-m`, `script` is a Python module"
        " name (`python -m script`). The interpreter must exist: `corral start` refuses a file"
        " whose interpreter is not found.",
        "- **ranges**: every numeric key has a range (the Range column), checked wherever a"
        " value comes from (file, command line, stdin JSON): a value outside it, `NaN`, an"
        " infinity or a number string over 64 characters is an error naming the file, the app"
        " and the key (exit 2), before anything starts. Durations go up to 30 days, sizes up to"
        " 64T, `instances` from -1024 to 1024.",
        "- **`corral start` flags**: the flag column lists the option that sets each key when"
        " starting a script (`corral start app.py -i 4 --kill-timeout 5s`), PM2's spelling"
        " first; docs/pm2.md maps PM2's whole CLI.",
        "",
        f"Keys marked **not yet active** ({', '.join(f'`{n}`' for n in inactive)}) are parsed"
        " and validated now, so a file that uses them is checked, but they change nothing until"
        " the feature named in their status lands.",
        "",
        keys_table(),
        "",
        "## Ignored keys",
        "",
        "PM2 keys that mean nothing outside Node or PM2's own machinery are accepted and"
        " ignored, each with a notice saying why:",
        "",
        ignored_table(),
        "",
        "## Errors and warnings",
        "",
        "- An **unknown key** is a warning, with a suggestion when one is close:"
        " `ecosystem.json: app 'web': unknown key 'instance': did you mean 'instances'? (ignored)`.",
        "- A **wrong type or value** is an error naming the file, the app and the key as written,"
        " and nothing is started (exit code 2):"
        " `/srv/app/ecosystem.toml: app 'web': key 'max_restarts': expected a whole number, got 'many'`.",
        "- Two apps with the same name, a `--only` name that is not in the file, an `env_<name>`"
        " that is not a table, a `cwd` or script that does not exist and an interpreter that is"
        " not found are errors too.",
        "- Loaded, every app is one typed `AppSpec` (`corral/core/appspec.py`: one field per key"
        " above, durations in ms, sizes in bytes); that is what `corral start` sends, what the"
        " daemon checks once and keeps, and what `corral save` writes (docs/architecture.md).",
        "",
        "## A worked example",
        "",
        "The same two apps in each format (they load to the same normalised apps):",
        "",
        "### TOML",
        "",
        "```toml",
        EXAMPLE_TOML.rstrip(),
        "```",
        "",
        "### YAML",
        "",
        "```yaml",
        EXAMPLE_YAML.rstrip(),
        "```",
        "",
        "### PM2 JavaScript",
        "",
        "```js",
        EXAMPLE_JS.rstrip(),
        "```",
        "",
        "## Tooling: `corral ecosystem`",
        "",
        "- `corral ecosystem check FILE [--env NAME] [--only a,b] [--json] [--all]` loads and validates"
        " a file without starting anything (no daemon needed) and prints the normalised apps:"
        " aliases resolved, `instances` as the number that would run here, sizes in bytes,"
        " durations in ms, `exec_mode` as `fork` or `cluster`, env merged for `--env` with every"
        " value a string, the interpreter and the command line resolved, `cwd` and log paths"
        " absolute, and the keys that were ignored and why. Warnings (unknown keys, cluster mode"
        " with no listen socket, a Python app with `PYTHONUNBUFFERED` set off) are listed. Exit"
        " code 0 when valid, 2 when not, with the same error as `corral start`. The text output"
        " leaves out keys at their defaults unless `--all` is given; `--json` has every key.",
        "- `corral ecosystem convert FILE [--to toml|yaml|json] [--env NAME] [-o OUT]` writes the"
        " same apps in another format (Corral's TOML by default), e.g. a PM2"
        " `ecosystem.config.js` to `ecosystem.toml`. Aliases are written under Corral's names;"
        " values that needed Node to evaluate are written as their result with a comment saying"
        " so; dropped keys are listed in a comment (in JSON, on stderr). With `--env NAME` the"
        " chosen `env_<name>` is merged into `env` and the other `env_*` tables are dropped."
        " Written to another folder with `-o`, relative paths are made absolute. The output is"
        " loaded back before it is written: it must give the same normalised apps.",
        "- `corral ecosystem init [--python | --node | --procfile Procfile] [-o ecosystem.toml]`"
        " writes a commented starter file: a web app in cluster mode with a listen socket and a"
        " worker, with production and development envs; or one app per `name: command` line of"
        " a Procfile (a command with shell syntax or `$VARIABLES` runs under `sh -c`; `$PORT`"
        " gets `env.PORT` 5000, 5100... as foreman numbers them). `-o -` prints it; an existing"
        " file is replaced only with `--force`.",
        "",
        "### `check --json`",
        "",
        "One JSON document. `apps` holds every key of the table above, normalised, plus:"
        " `instances` (the number that would run on this machine: `cpus` is the CPU count used),"
        " `instances_config` (as written), `command` (the argv that would run), `env_names` (the"
        " `env_<name>` tables defined), `set` (the keys the file sets; the others are defaults),"
        " `aliases` (alias as written -> Corral's key), `ignored` (key -> why) and `unknown`"
        " (key -> suggested key or null). Log files left at their default are shown at their"
        " path under `CORRAL_HOME`; with several instances and no `merge_logs`, instance N"
        " writes `NAME-out-N.log`. Top-level `ignored`, `warnings` and `notices` apply to the"
        " whole file.",
        "",
        "```json",
        json.dumps(CHECK_JSON_EXAMPLE, indent=2),
        "```",
        "",
        "An invalid file prints `valid: false` and the error, and exits 2:",
        "",
        "```json",
        json.dumps(CHECK_JSON_ERROR_EXAMPLE, indent=2),
        "```",
        "",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.config.docs", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"write {DOCS_PATH}")
    group.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    ns = parser.parse_args(argv)
    text = render()
    if ns.write:
        DOCS_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOCS_PATH.write_text(text, encoding="utf-8")
        return 0
    if ns.check:
        current = DOCS_PATH.read_text(encoding="utf-8") if DOCS_PATH.exists() else ""
        if current != text:
            sys.stderr.write(f"{DOCS_PATH} is out of date: run python -m corral.config.docs --write\n")
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
