"""Every measured figure in the documents, generated from ``benchmarks/results/*.json``.

    python -m benchmarks.render            # rewrite every generated block
    python -m benchmarks.render --check    # exit 1 naming each file and block that disagrees
    python -m benchmarks.render --list     # every block, the results it reads, where it is

A block is the text between ``<!-- generated: NAME -->`` and ``<!-- /generated -->`` in
README.md or a Markdown file under docs/ (:mod:`benchmarks.render.blocks`); each name has a
renderer in :mod:`benchmarks.render.areas` that turns the results into Markdown, using the
shared wording of :mod:`benchmarks.render.cells`. ``tests/test_benchmark_docs.py`` runs the
check. benchmarks/README.md lists the areas, their results and the keys they read.
"""
