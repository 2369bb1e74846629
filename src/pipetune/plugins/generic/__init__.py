"""The generic plugin: fidelity metrics for common output kinds, and the transformations
that belong to no domain (batching, caching, parallel preprocessing)."""
