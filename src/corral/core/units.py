"""Parsing and formatting of sizes and durations, in PM2's value forms."""

from __future__ import annotations

import re

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:ib|i|b)?|(b)?)\s*$", re.IGNORECASE)
_SIZE_MULT = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

_DUR_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
_DUR_MULT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_size(value: object) -> int:
    """Parse ``"1G"``, ``"500M"``, ``"200K"``, ``"1.5GB"`` or a number of bytes into bytes.

    Like PM2, the suffixes are binary (1K = 1024 bytes).
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '500M' or a number of bytes, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    if isinstance(value, float):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            number, unit, _ = m.groups()
            return int(float(number) * _SIZE_MULT[(unit or "").lower()])
    raise ValueError(f"expected a size such as '500M', '1G' or a number of bytes, got {value!r}")


def parse_duration_ms(value: object) -> int:
    """Parse ``"10s"``, ``"2m"``, ``"1h"``, ``"250ms"`` or a number of milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '10s' or milliseconds, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return int(value)
    if isinstance(value, str):
        m = _DUR_RE.match(value)
        if m:
            number, unit = m.groups()
            return int(float(number) * _DUR_MULT[(unit or "ms").lower()])
    raise ValueError(
        f"expected a duration such as '10s', '2m', '500ms' or a number of milliseconds, got {value!r}"
    )


def format_bytes(n: float | None) -> str:
    """Short human form: ``12.3mb``, like PM2's table."""
    if n is None:
        return "-"
    for unit in ("b", "kb", "mb", "gb"):
        if abs(n) < 1024 or unit == "gb":
            if unit == "b":
                return f"{int(n)}{unit}"
            return f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}tb"


def format_duration(seconds: float | None) -> str:
    """Short human form of an uptime: ``5s``, ``3m``, ``2h``, ``4D``, like PM2."""
    if seconds is None or seconds < 0:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}D"
