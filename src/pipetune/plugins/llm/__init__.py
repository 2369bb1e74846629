"""The llm plugin (DESIGN §4)."""
