"""Read ``stock_related`` back (the CLI's ``stockml related``, the service's ``/classify``).

Rows are keyed by (pipeline, cutoff_week) like every output; readers want one set: the rows of
the latest data cut-off, and of the pipeline that wrote last when several wrote that cut-off.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from training.data.store import latest_output

TABLE = "stock_related"


def latest_related(target: Any, schema: str | None = None) -> pd.DataFrame | None:
    """The latest set of related-product rules, or ``None`` when ``stock_related`` is absent or empty."""
    return latest_output(target, TABLE, schema)


def related_by_sku(rules: pd.DataFrame | None, limit: int = 10) -> dict[str, list[dict]]:
    """{sku: [{sku, confidence, lift}, ...]} strongest first (confidence, then lift), at most ``limit`` each."""
    if rules is None or rules.empty:
        return {}
    ordered = rules.sort_values(["sku", "confidence", "lift"], ascending=[True, False, False])
    return {
        str(sku): [
            {"sku": str(r.related_sku), "confidence": float(r.confidence), "lift": float(r.lift)}
            for r in g.head(limit).itertuples()
        ]
        for sku, g in ordered.groupby("sku", sort=False)
    }
