"""Built-in plugins. Each is loaded by name (``pipetune.core.kernel.manager.BUILTIN_PLUGINS``)
through the same path as a third-party plugin."""
