"""The Corral daemon (``python -m corral.daemon``)."""
