"""App definitions arriving in requests (``start``, ``reload FILE``, ``resurrect``):
validated in full before the daemon allocates anything for them, then
registered all or nothing.

* :func:`client_env` is the one conversion of a request's ``client_env``.
* :meth:`Registry.validate` normalises each definition, checks that names are
  unique and that the daemon-wide ceiling on instances (``[daemon]
  max_instances`` in corral.toml) holds, naming the app and key.
* :meth:`Registry.bind_all` registers new apps (binding their sockets) and,
  for a reload, applies new definitions; when one socket cannot be bound,
  everything it did is undone (:meth:`Registry.rollback`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from corral import listeners as listen
from corral import safefs
from corral.config.keys import resolve_instances
from corral.config.loader import normalize_app
from corral.daemon.dispatch import RequestError
from corral.errors import ConfigError

if TYPE_CHECKING:
    from corral.daemon.instance import App
    from corral.daemon.supervisor import Supervisor

Changed = list[tuple["App", dict[str, Any]]]


def client_env(value: Any) -> dict[str, str]:
    """A request's ``client_env`` (already checked to be an object) as the env apps inherit."""
    return {str(k): str(v) for k, v in (value or {}).items()}


class Registry:
    def __init__(self, sup: Supervisor, max_instances: Callable[[], int]) -> None:
        self.sup = sup
        self.max_instances = max_instances

    # ------------------------------------------------------------ validation

    def validate(self, raw_apps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Normalised definitions, or RequestError naming the app and key."""
        apps = []
        for i, raw in enumerate(raw_apps):
            name = raw.get("name") if isinstance(raw.get("name"), str) else f"#{i + 1}"
            clean = {k: v for k, v in raw.items() if k != "env_names"}
            try:
                app, _warnings, _ignored = normalize_app(clean, label="request", resolve=False)
            except ConfigError as e:
                raise RequestError("bad_config", e.render())
            env_names = raw.get("env_names", [])
            if not isinstance(env_names, list) or not all(isinstance(e, str) for e in env_names):
                raise RequestError("bad_config", f"request: app '{name}': key 'env_names' must be a list of strings")
            app["env_names"] = env_names
            if not os.path.isabs(app["cwd"]):
                raise RequestError("bad_config", f"request: app '{name}': key 'cwd' must be absolute")
            try:
                safefs.check_app_files(app)  # another uid's app: no log/pid path it could redirect
            except ConfigError as e:
                raise RequestError("bad_config", e.render())
            apps.append(app)
        names = [a["name"] for a in apps]
        if len(set(names)) != len(names):
            raise RequestError("bad_config", "request: two apps have the same name")
        self.check_ceiling({a["name"]: resolve_instances(a["instances"], self.sup.cpu_count) for a in apps})
        return apps

    def ceiling(self) -> int:
        from corral.daemon import settings

        try:
            return self.max_instances()
        except ConfigError as e:
            self.sup.log(f"[daemon] settings ignored: {e.render()}")
            return settings.DEFAULT_MAX_INSTANCES

    def check_ceiling(self, wanted: dict[str, int], *, field: str | None = None) -> None:
        """Refuse when apps with these instance counts (replacing their current ones)
        would bring the daemon over its ceiling; ``field`` names a request field to blame."""
        ceiling = self.ceiling()
        others = sum(len(app.instances) for name, app in self.sup.apps.items() if name not in wanted)
        total = others
        for name, count in wanted.items():
            total += count
            if count > ceiling or total > ceiling:
                where = f"field '{field}'" if field else f"request: app '{name}': key 'instances'"
                raise RequestError(
                    "bad_args" if field else "bad_config",
                    f"{where}: {count:,} instances would make {total:,} in all, over the daemon's ceiling of {ceiling:,} "
                    "(max_instances in the [daemon] table of corral.toml)",
                )

    # ------------------------------------------------------------ registration

    def bind_all(self, configs: Iterable[dict[str, Any]], env: dict[str, str], source: str | None, *, redefine: bool) -> tuple[list[App], Changed]:
        """Register every new app (binding its sockets); with ``redefine``, also give known
        apps their new definition.  All or nothing: a socket that cannot be bound undoes
        the rest and raises ListenError."""
        added: list[App] = []
        changed: Changed = []
        try:
            for cfg in configs:
                existing = self.sup.apps.get(cfg["name"])
                if existing is None:
                    added.append(self.sup.add_app(cfg, env, source=source))
                elif redefine:
                    previous = existing.config
                    self.sup.set_config(existing, cfg)
                    changed.append((existing, previous))
        except listen.ListenError:
            self.rollback(added, changed)
            raise
        return added, changed

    def rollback(self, added: list[App], changed: Changed) -> None:
        for app in added:
            app.close_listeners()
            self.sup.apps.pop(app.name, None)
        for app, previous in reversed(changed):
            try:
                self.sup.set_config(app, previous)
            except listen.ListenError as e:
                self.sup.log(f"[daemon] {app.name}: could not restore its sockets: {e}")
