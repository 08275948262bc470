"""The pure parts: the state machine, units, cron, health specs, launch building, errors, the wire protocol and the command registry. No I/O of their own."""
