"""The nlp plugin (DESIGN §4)."""
