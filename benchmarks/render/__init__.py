"""Every measured figure in the documents, generated from ``benchmarks/results/*.json``."""
