"""The vision plugin (DESIGN §4)."""
