"""App definitions arriving in requests (``start``, ``reload FILE``, ``resurrect``):
validated in full before the daemon allocates anything for them, then
registered all or nothing.

* :func:`client_env` is the one conversion of a request's ``client_env``.
* :func:`decode_app` decodes and checks each definition (once: see its doc);
  :meth:`Registry.validate` checks that names are
  unique and that the daemon-wide ceiling on instances (``[daemon]
  max_instances`` in corral.toml) holds, naming the app and key.
* :meth:`Registry.bind_all` registers new apps (binding their sockets) and,
  for a reload, applies new definitions; when one socket cannot be bound,
  everything it did is undone (:meth:`Registry.rollback`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from corral.config.keys import KEYS, resolve_instances, short
from corral.core.appspec import AppSpec, as_dict, from_wire
from corral.core.errors import ConfigError
from corral.daemon.dispatch import RequestError
from corral.system import listeners as listen
from corral.system import safefs

if TYPE_CHECKING:
    from corral.daemon.instance import App
    from corral.daemon.supervisor import Supervisor

Changed = list[tuple["App", AppSpec]]


def decode_app(raw: Any, index: int = 0) -> AppSpec:
    """One app of a request as an :class:`AppSpec`: the one place the daemon checks a
    client's definition, before anything is allocated.

    The daemon trusts no client, and the types a spec declares do not say everything
    a key accepts (ranges, signal names, cron patterns, names that become file names...).
    So, once: ``msgspec.convert`` checks the shape and types (unknown fields refused),
    then every key's parser from ``KEYS`` must read the value as itself (a loaded app is
    a fixed point of its parsers: nothing is re-normalised, a value the loader would not
    have produced is refused), then the paths: ``cwd`` absolute, and log and pid files
    no other user can redirect (``safefs.check_app_files``).
    """
    name = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else f"#{index + 1}"
    where = f"request: app '{name}'"
    try:
        spec = from_wire(raw)
    except msgspec.ValidationError as e:
        raise RequestError("bad_config", f"{where}: {_field_error(str(e))}")
    for key in KEYS:
        value = getattr(spec, key.name)
        plain = _PLAIN.get(key.name, msgspec.to_builtins)(value)
        try:
            parsed = key.parse(plain)
        except ValueError as e:
            raise RequestError("bad_config", f"{where}: key '{key.name}': {e}")
        if parsed != plain:
            raise RequestError("bad_config", f"{where}: key '{key.name}': {short(plain)} is not as loaded (it reads as {short(parsed)})")
    if not os.path.isabs(spec.cwd):
        raise RequestError("bad_config", f"{where}: key 'cwd' must be absolute")
    try:
        safefs.check_app_files(as_dict(spec))  # another uid's app: no log/pid path it could redirect
    except ConfigError as e:
        raise RequestError("bad_config", e.render())
    return spec


# A field's value as its key's parser returns it, where that is not msgspec.to_builtins.
_PLAIN: dict[str, Callable[[Any], Any]] = {"hooks": lambda hooks: [h.table() for h in hooks]}

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _field_error(message: str) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.kill_timeout``` as ``key 'kill_timeout': expected ...``."""
    m = _AT.match(message)
    what, path = (m.group("what"), m.group("path")) if m else (message, None)
    missing = re.match(r"Object (missing required|contains unknown) field `([^`]+)`", what)
    if missing:
        field = ((path or "").lstrip(".") + "." + missing.group(2)).lstrip(".")
        return f"key '{field}': " + ("is required" if missing.group(1) == "missing required" else "unknown key")
    if path:
        return f"key '{path.lstrip('.')}': {what[:1].lower()}{what[1:]}"
    return f"{what[:1].lower()}{what[1:]}"


def client_env(value: Any) -> dict[str, str]:
    """A request's ``client_env`` (already checked to be an object) as the env apps inherit."""
    return {str(k): str(v) for k, v in (value or {}).items()}


class Registry:
    def __init__(self, sup: Supervisor, max_instances: Callable[[], int]) -> None:
        self.sup = sup
        self.max_instances = max_instances

    # ------------------------------------------------------------ validation

    def validate(self, raw_apps: list[Any]) -> list[AppSpec]:
        """The request's apps decoded (:func:`decode_app`), with unique names and within
        the instance ceiling, or RequestError naming the app and key."""
        apps = [decode_app(raw, i) for i, raw in enumerate(raw_apps)]
        names = [a.name for a in apps]
        if len(set(names)) != len(names):
            raise RequestError("bad_config", "request: two apps have the same name")
        self.check_ceiling({a.name: resolve_instances(a.instances, self.sup.cpu_count) for a in apps})
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

    def bind_all(self, specs: Iterable[AppSpec], env: dict[str, str], source: str | None, *, redefine: bool) -> tuple[list[App], Changed]:
        """Register every new app (binding its sockets); with ``redefine``, also give known
        apps their new definition.  All or nothing: a socket that cannot be bound undoes
        the rest and raises ListenError."""
        added: list[App] = []
        changed: Changed = []
        try:
            for spec in specs:
                existing = self.sup.apps.get(spec.name)
                if existing is None:
                    added.append(self.sup.add_app(spec, env, source=source))
                elif redefine:
                    previous = existing.spec
                    self.sup.set_spec(existing, spec)
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
                self.sup.set_spec(app, previous)
            except listen.ListenError as e:
                self.sup.log(f"[daemon] {app.name}: could not restore its sockets: {e}")
