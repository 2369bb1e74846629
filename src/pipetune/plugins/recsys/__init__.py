"""The recsys plugin (DESIGN §4)."""
