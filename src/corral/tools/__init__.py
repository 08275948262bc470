"""Tools around the core: ecosystem check/convert/init, export, the terminal monitor, protocol docs."""
