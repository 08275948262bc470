"""The operating-system edge: processes, safe file operations, the home folder, listening sockets, sd_notify, leftovers."""
