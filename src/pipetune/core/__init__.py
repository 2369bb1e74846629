"""pipetune's core, split by responsibility; each package owns one part of the product.

* :mod:`.kernel` — the plugin contract and the data it speaks: the pipeline model
  (``Pipeline``, ``Stage``, ``Workload``, ``Requirements``), results, the hook
  specifications, the plugin manager and registries, errors, and the execution primitives
  the plugin manager needs too: cancellation and deadlines (``control``), long-lived worker
  threads (``workers``), the ``--isolate`` breadcrumb (``isolation``).
* :mod:`.runtime` — running a pipeline: offline (inline, threads, processes), online
  (arrivals into a queue) and stream (continuous batching) modes, thread pinning, the
  machine description, what a run observes (``observe``: run-queue wait, input sizes).
* :mod:`.measure` — measuring it: the profiler and its probes, the side-by-side comparison,
  the validator, fidelity, the replayed estimate, the capacity planner.
* :mod:`.loop` — the optimize loop: the planner, the loop itself, recipes and the run store.
* :mod:`.report` — the report of a run and its renderings (terminal, Markdown, HTML, JSON).

Layering (checked by ``make lint``, import-linter contracts in ``pyproject.toml``): the
core never imports ``pipetune.plugins``, ``pipetune.cli``, ``pipetune.monitor``,
``pipetune.demos`` or ``pipetune.scale``; built-in plugins are loaded by name through the
same path as third-party ones. Inside the core, loop > report > measure > runtime > kernel:
a package imports only those below it.
"""
