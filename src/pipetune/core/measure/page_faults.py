"""The process's minor page faults: how much fresh memory a measured pass touched.

A pass that maps and faults in tens of megabytes an input (large temporaries freed back
to the operating system after each call) spends much of its time in the kernel, and how
much depends on the state of the process's heap: a long-running process whose heap is
already large measures it faster than a fresh one. The comparison counts the faults of
each side's passes so that a figure resting on such a side says so.
"""

from __future__ import annotations


def minor_page_faults() -> int | None:
    """Minor page faults of this process so far (every thread; not worker processes');
    ``None`` where the platform does not count them."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
