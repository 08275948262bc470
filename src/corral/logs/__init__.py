"""Log files: the sink apps write through, rotation, reading history, dates, the daemon's own log."""
