"""Running a pipeline over a workload, the same way for profiling, validation and production.

:mod:`.offline` runs a batch job (inline, on worker threads, or on worker processes built
by an importable factory: :mod:`.processes`) and picks the mode from a workload
(:func:`.offline.run`); :mod:`.online` serves open-loop arrivals through a queue with an
optional batcher (its figures in :mod:`.online_stats`); :mod:`.stream` serves generation
with continuous batching (the protocol's types in :mod:`.stream_protocol`, its figures in
:mod:`.stream_stats`); online and stream runs draw their arrivals from :mod:`.arrivals`.
Every mode returns a :class:`.result.RunResult`. The inline, thread and online modes
(unbatched and batched) share one serving loop, :class:`.serving_loop.ServingLoop`: it
runs each worker's chunks through :mod:`.recorder` and owns stopping, failures, progress,
supervision and the result, so each mode keeps only where its work comes from (a counter
over the items, an arrival queue, a batcher). The stream runner is watched by the same
supervisor (:func:`.supervise.supervise`); the process executor and the llm plugin's
schedulers say in their docstrings why the loop does not fit them. :mod:`.threads` pins
the thread pools of the libraries a pipeline uses (sized from :mod:`.machine`, the host's
description), :mod:`.observe` holds what a run observes (run-queue wait, input sizes,
percentiles), :mod:`.serving` the serving options, :mod:`.trace` writes Chrome traces of a
run. Worker threads and cancellation are the kernel's (:mod:`pipetune.core.kernel.workers`,
:mod:`pipetune.core.kernel.control`): the plugin manager uses them too.
"""
