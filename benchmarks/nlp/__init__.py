"""Benchmarks of the nlp plugin: ``python -m benchmarks.nlp.run [--quick]``."""
