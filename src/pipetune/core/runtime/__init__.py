"""Running a pipeline over a workload, the same way for profiling, validation and production.

:mod:`.offline` runs a batch job (inline, on worker threads, or on worker processes built
by an importable factory: :mod:`.processes`) and picks the mode from a workload
(:func:`.offline.run`); :mod:`.online` serves open-loop arrivals through a queue with an
optional batcher; :mod:`.stream` serves generation with continuous batching (the protocol's
types in :mod:`.stream_protocol`, its figures in :mod:`.stream_stats`). Every mode returns a
:class:`.result.RunResult`; offline and online time inputs through :mod:`.recorder` and
watch their worker threads with :mod:`.supervise`. :mod:`.threads` pins the thread
pools of the libraries a pipeline uses (sized from :mod:`.machine`, the host's description),
:mod:`.observe` holds what a run observes (run-queue wait, input sizes, percentiles),
:mod:`.serving` the serving options, :mod:`.trace` writes Chrome traces of a run. Worker
threads and cancellation are the kernel's (:mod:`pipetune.core.kernel.workers`,
:mod:`pipetune.core.kernel.control`): the plugin manager uses them too.
"""
