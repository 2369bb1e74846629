"""pipetune's version, in a module of its own so that the core can read it without
importing the public API (``pipetune/__init__.py`` imports the whole core)."""

__version__ = "0.1.0"
