"""``python -m pipetune``: the same as the ``pipetune`` command."""

from __future__ import annotations

import sys

from pipetune.cli.main import main

sys.exit(main())
