"""Small adapters for servers that need a nudge to behave perfectly under Corral."""
