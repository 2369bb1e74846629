"""The built-in demos (``pipetune demo NAME``) and the generators of their data.

Each domain plugin registers its demo through ``register_demos`` and imports it from here
lazily, so none of this code (nor its data generators) loads while a user's own pipeline
is profiled or optimized. Demos build their pipelines from the plugins' blocks, as a user
would; the plugins never import a demo except to register it.
"""
