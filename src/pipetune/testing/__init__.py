"""A kit for plugin authors (and pipetune's own tests)."""
