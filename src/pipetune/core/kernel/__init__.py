"""The plugin kernel: the contract between pipetune and its plugins.

It owns the pipeline model (:mod:`.model`: stages and pipelines in :mod:`.pipeline`, the
workload in :mod:`.workload`, recorded arrivals in :mod:`.trace`, the requirements in
:mod:`.requirements`), the results plugins return and the loop records
(:mod:`.results`, serialized by :mod:`.serial`), the hook specifications (:mod:`.hookspecs`),
the plugin manager that loads and calls plugins (:mod:`.manager`), the records plugins
register — backends, dependencies, demos, change types and output kinds (:mod:`.registry`,
typed change params in :mod:`.params`) — and the dispatch of tune, materialize and output
comparison to the one plugin that registered them (:mod:`.dispatch`), what a hook is handed
(:mod:`.context`, :mod:`.artifacts`), component state (:mod:`.state`), configuration read
from ``pyproject.toml`` (:mod:`.config`) and the error types (:mod:`.errors`), and the
execution primitives everything above shares, the plugin manager included: cancellation
and deadlines (:mod:`.control`), long-lived worker threads (:mod:`.workers`), the
``--isolate`` breadcrumb (:mod:`.isolation`) and files written whole or not at all
(:mod:`.atomic`). Everything else in pipetune builds on this package; it imports nothing
from the rest of the core.
"""
