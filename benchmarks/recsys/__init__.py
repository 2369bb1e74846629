"""Recsys benchmarks: ANN vs exact retrieval, two-stage vs full-catalog ranking."""
