"""Measuring a pipeline and judging a change.

:mod:`.profiler` (with :mod:`.probes`, :mod:`.machine`, :mod:`.gpu`) says where the time
goes; :mod:`.comparison` times two pipelines side by side, interleaved, with an interval;
:mod:`.validator` decides whether a change is kept (speed from the comparison, fidelity
from :mod:`.fidelity`); :mod:`.stats` holds the shared statistics; :mod:`.capacity` plans
instances from measured rates.
"""
