"""Measuring a pipeline and judging a change.

:mod:`.profiler` (with :mod:`.probes`, :mod:`.gpu`) says where the time goes;
:mod:`.estimate` replays a profile to estimate a stage speedup's end-to-end effect;
:mod:`.comparison` times two pipelines side by side, interleaved, with an interval;
:mod:`.validator` decides whether a change is kept (speed from the comparison, fidelity
from :mod:`.fidelity`); :mod:`.stats` holds the shared statistics; :mod:`.capacity` plans
instances from measured rates. The machine description is the runtime's
(:mod:`pipetune.core.runtime.machine`).
"""
