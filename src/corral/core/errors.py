"""Error types shared by the CLI, the config loader and the daemon."""

from __future__ import annotations

import sys


class CorralError(Exception):
    """Base class: an error with a message meant for a person."""

    exit_code = 1


class ConfigError(CorralError):
    """A bad ecosystem file or app definition: names the file, the app and the key."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        app: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.app = app
        self.key = key
        super().__init__(self.render())

    def render(self) -> str:
        where: list[str] = []
        if self.file:
            where.append(self.file)
        if self.app:
            where.append(f"app '{self.app}'")
        if self.key:
            where.append(f"key '{self.key}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def with_context(
        self, *, file: str | None = None, app: str | None = None, key: str | None = None
    ) -> ConfigError:
        return ConfigError(
            self.message,
            file=self.file or file,
            app=self.app or app,
            key=self.key or key,
        )


class UsageError(CorralError):
    """Bad command-line usage."""

    exit_code = 2


class NotFoundError(CorralError):
    """Nothing matched the given name, id or namespace."""

    exit_code = 1


class DaemonError(CorralError):
    """The daemon could not be reached or answered with an error."""

    exit_code = 1


def report(e: CorralError) -> int:
    """Write ``corral: error: ...`` for ``e`` on stderr (a config error naming file, app
    and key); return its exit status. Every command-line entry point ends errors here."""
    message = e.render() if isinstance(e, ConfigError) else str(e)
    sys.stderr.write(f"corral: error: {message}\n")
    return e.exit_code
