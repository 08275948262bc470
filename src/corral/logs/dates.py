"""Dates in log lines and rotated file names: PM2's moment.js format tokens.

``compile_date_format`` turns a format into a formatter of epoch seconds (for
``log_date_format`` prefixes and rotated names); ``date_pattern`` turns it into
a regular expression matching exactly what that formatter produces, so rotated
files are recognised by their exact name, never by a loose glob.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

# PM2 uses moment.js tokens; longest first so YYYY wins over YY.
_MOMENT_TOKENS = [
    ("YYYY", "%Y"),
    ("YY", "%y"),
    ("MMMM", "%B"),
    ("MMM", "%b"),
    ("MM", "%m"),
    ("DD", "%d"),
    ("Do", "%d"),
    ("dddd", "%A"),
    ("ddd", "%a"),
    ("HH", "%H"),
    ("hh", "%I"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("SSS", "{ms}"),
    ("ZZ", "%z"),
    ("Z", "{tz}"),
    ("A", "%p"),
    ("a", "{ampm}"),
    ("X", "{unix}"),
    ("x", "{unixms}"),
]
_TOKEN_RE = re.compile(r"\[[^\]]*\]|" + "|".join(re.escape(t) for t, _ in _MOMENT_TOKENS))
_TOKEN_MAP = dict(_MOMENT_TOKENS)


def compile_date_format(fmt: str) -> Callable[[float], str]:
    """Compile a moment.js format (``YYYY-MM-DD HH:mm:ss Z``) to a formatter of epoch seconds."""
    parts: list[str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(fmt):
        parts.append(fmt[pos : m.start()].replace("%", "%%"))
        tok = m.group(0)
        if tok.startswith("["):
            parts.append(tok[1:-1].replace("%", "%%"))
        else:
            parts.append(_TOKEN_MAP[tok])
        pos = m.end()
    parts.append(fmt[pos:].replace("%", "%%"))
    template = "".join(parts)
    needs_extra = "{" in template

    def fmt_time(ts: float) -> str:
        lt = time.localtime(ts)
        out = time.strftime(template, lt)
        if needs_extra:
            off = lt.tm_gmtoff or 0
            sign = "+" if off >= 0 else "-"
            off = abs(off)
            out = out.replace("{ms}", f"{int(ts * 1000) % 1000:03d}")
            out = out.replace("{tz}", f"{sign}{off // 3600:02d}:{(off % 3600) // 60:02d}")
            out = out.replace("{ampm}", time.strftime("%p", lt).lower())
            out = out.replace("{unixms}", str(int(ts * 1000)))
            out = out.replace("{unix}", str(int(ts)))
        return out

    return fmt_time


def iso_time(ts: float) -> str:
    lt = time.localtime(ts)
    off = lt.tm_gmtoff or 0
    sign = "+" if off >= 0 else "-"
    off = abs(off)
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", lt)
        + f".{int(ts * 1000) % 1000:03d}{sign}{off // 3600:02d}:{(off % 3600) // 60:02d}"
    )


# What each token can produce, for recognising rotated names (locale names: letters)
_TOKEN_REGEX = {
    "YYYY": r"\d{4}",
    "YY": r"\d{2}",
    "MMMM": r"[^\W\d_]+",
    "MMM": r"[^\W\d_]+",
    "MM": r"\d{2}",
    "DD": r"\d{2}",
    "Do": r"\d{2}",
    "dddd": r"[^\W\d_]+",
    "ddd": r"[^\W\d_]+",
    "HH": r"\d{2}",
    "hh": r"\d{2}",
    "mm": r"\d{2}",
    "ss": r"\d{2}",
    "SSS": r"\d{3}",
    "ZZ": r"[+-]\d{4}",
    "Z": r"[+-]\d{2}:\d{2}",
    "A": r"[^\W\d_]*",
    "a": r"[^\W\d_]*",
    "X": r"\d+",
    "x": r"\d+",
}


def date_pattern(fmt: str) -> str:
    """A regular expression (no anchors) matching exactly the strings ``compile_date_format(fmt)``
    produces."""
    parts: list[str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(fmt):
        parts.append(re.escape(fmt[pos : m.start()]))
        tok = m.group(0)
        parts.append(re.escape(tok[1:-1]) if tok.startswith("[") else _TOKEN_REGEX[tok])
        pos = m.end()
    parts.append(re.escape(fmt[pos:]))
    return "".join(parts)
