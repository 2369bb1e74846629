"""The hardware plugin (DESIGN §4)."""
