"""Cron patterns: validation (for the config keys) and the next fire time (for the daemon).

PM2's patterns, read by croniter: five fields, or six with seconds first
(``*/10 * * * * *``, as croner reads them).  croniter is imported only when a
pattern is used.
"""

from __future__ import annotations


def _seconds_first(pattern: str) -> bool:
    return len(pattern.split()) == 6


def next_cron(pattern: str, after: float) -> float:
    """Next fire time after ``after`` (epoch seconds)."""
    from croniter import croniter

    return float(croniter(pattern, after, second_at_beginning=_seconds_first(pattern)).get_next(float))


def validate_cron(pattern: str) -> None:
    """Raise ValueError for a pattern croniter cannot read (when croniter is installed)."""
    try:
        from croniter import croniter
    except ImportError:
        return
    if not croniter.is_valid(pattern, second_at_beginning=_seconds_first(pattern)):
        raise ValueError(f"invalid cron pattern {pattern!r}")
