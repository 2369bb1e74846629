"""Reports of an optimize run: the data (:class:`Report`) and its renderings.

* :mod:`.json` — the JSON contract (``Report.to_dict``), validated against
  the JSON Schema when the schema module is present.
* :mod:`.terminal` — rich tables for the console.
* :mod:`.markdown` — a Markdown summary (for a pull request or a wiki).
* :mod:`.html` — one self-contained page with inline SVG plots; nothing loads from the
  network.
* :mod:`.cost` — cost per 1,000 predictions and per month, before and after.
"""

from __future__ import annotations

from pipetune.core.report.model import Report

__all__ = ["Report"]
