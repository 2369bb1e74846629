"""Measuring a pipeline and judging a change.

:mod:`.profiler` (with :mod:`.profile_passes`, :mod:`.profile_summary`, :mod:`.probes`,
:mod:`.gpu`) says where the time goes; :mod:`.estimate` replays a profile to estimate a
stage speedup's end-to-end effect; :mod:`.comparison` times two pipelines side by side,
interleaved, with an interval (one pass: :mod:`.timed_pass`; the rounds' statistics:
:mod:`.round_stats`; the record: :mod:`.comparison_result`); :mod:`.validator` decides
whether a change is kept (speed from the comparison and :mod:`.speed_verdict`, fidelity
from :mod:`.fidelity` and :mod:`.fidelity_gate`); :mod:`.stats` holds the shared
statistics; :mod:`.capacity` plans instances from measured rates (with
:mod:`.instance_scaling`, :mod:`.queue_simulation`, :mod:`.capacity_online`,
:mod:`.growth`). The machine description is the runtime's
(:mod:`pipetune.core.runtime.machine`).
"""
