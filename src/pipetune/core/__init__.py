"""pipetune's core, split by responsibility; each package owns one part of the product.

* :mod:`.kernel` — the plugin contract and the data it speaks: the pipeline model
  (``Pipeline``, ``Stage``, ``Workload``, ``Requirements``), results, the hook
  specifications, the plugin manager and registries, errors.
* :mod:`.runtime` — running a pipeline: offline (inline, threads, processes), online
  (arrivals into a queue) and stream (continuous batching) modes, thread pinning.
* :mod:`.measure` — measuring it: the profiler and its probes, the side-by-side comparison,
  the validator, fidelity, the machine description, the capacity planner.
* :mod:`.loop` — the optimize loop: the planner, the loop itself, recipes and the run store.
* :mod:`.report` — the report of a run and its renderings (terminal, Markdown, HTML, JSON).

Layering (checked by ``make lint``): the core never imports ``pipetune.plugins``,
``pipetune.cli`` or ``pipetune.monitor``; built-in plugins are loaded by name through the
same path as third-party ones.
"""
