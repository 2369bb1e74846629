"""Running an optimized pipeline beyond one process: over a dataset, on Ray, on Ray Serve.

This package sits above the core (``pipetune.core`` never imports it) and owns:

* :mod:`~pipetune.scale.rows` — input files (JSONL, Parquet, CSV) parsed into keyed rows,
  malformed rows kept with their file and line;
* :mod:`~pipetune.scale.sinks` — the output (JSONL, Parquet) and errors files;
* :mod:`~pipetune.scale.collect` — the driver's side: each row written exactly once, the
  job's summary;
* :mod:`~pipetune.scale.job` — what a worker needs to rebuild the pipeline (TARGET, recipe),
  built once per process; cheap stages shipped instead;
* :mod:`~pipetune.scale.plan` — the Ray Data plan derived from the profile;
* :mod:`~pipetune.scale.execute` — a group of stages over a batch, one outcome per input;
* :mod:`~pipetune.scale.local` — the local engine (the existing offline runtime);
* :mod:`~pipetune.scale.ray_env`, :mod:`~pipetune.scale.ray_data` — reaching Ray, and the
  Ray Data engine;
* :mod:`~pipetune.scale.serve_sizing`, :mod:`~pipetune.scale.serve_app` — a Ray Serve
  deployment sized from capacity's plan;
* :mod:`~pipetune.scale.cluster` — capacity for a Ray cluster;
* :mod:`~pipetune.scale.runner` — ``pipetune run`` as a library call.

Ray is optional (``pip install "pipetune[ray]"``); only the Ray modules import it, and only
when a command needs it.
"""
