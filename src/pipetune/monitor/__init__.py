"""The production monitor: wrap a pipeline, record latency histograms (per stage and end to
end), throughput, errors and a sampled arrival trace; expose them to Prometheus and as a
file the CLI reads (``pipetune monitor show``, ``pipetune compare``, ``pipetune profile
--trace``).

``import pipetune.monitor`` imports neither ``prometheus_client`` nor anything heavy.
See docs/production.md.
"""

from __future__ import annotations

from pipetune.monitor.export import MonitorExport, load_export
from pipetune.monitor.histogram import Histogram
from pipetune.monitor.wrapper import Monitor, monitor

__all__ = ["Histogram", "Monitor", "MonitorExport", "load_export", "monitor"]
