"""pipetune's core: the model, the hooks, the manager, the runtime, the loop.

The core never imports ``pipetune.plugins``; built-in plugins are loaded by name through
the same path as third-party ones.
"""
