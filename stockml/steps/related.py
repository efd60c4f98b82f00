"""Related products: read the optional ``order_lines``, validate them, mine pairwise rules (``stock_related``).

Runs inside the ingest step (:func:`stockml.steps.ingest.ingest`): the order lines are source
data, validated and quarantined with the rest, and the rules are keyed by the same data cut-off
as the ingest's other outputs. A source without an ``order_lines`` table is normal: the step is
skipped with a log line, the ingest report says so, and ``stockml status`` prints it.
"""

from __future__ import annotations

import logging

import pandas as pd

from stockml.run import Run
from stockml.settings import Settings
from training.classification.related import RelatedConfig, related_products
from training.data.order_lines import OrderLinesResult, read_order_lines, validate_order_lines

log = logging.getLogger("stockml.pipeline")

SKIPPED = "skipped (the source has no order_lines table)"
RELATED_FILE = "related.parquet"


def related_config(s: Settings) -> RelatedConfig:
    return RelatedConfig(s.related_min_support, s.related_min_confidence, s.related_min_lift)


def read_orders(run: Run, known_skus: set[str], today: pd.Timestamp) -> OrderLinesResult | None:
    """The source's valid order lines and their quarantine, or ``None`` when it has no order lines."""
    s = run.settings
    raw = read_order_lines(run.hook(), s.source_schema, s.order_lines_query)
    if raw is None:
        log.info("related products: %s", SKIPPED)
        return None
    return validate_order_lines(raw, known_skus, today)


def mine(run: Run, orders: OrderLinesResult | None) -> tuple[pd.DataFrame | None, dict]:
    """(rules or None when skipped, the ingest report's ``related`` entry); the rules go to the run folder."""
    if orders is None:
        return None, {"status": "skipped", "reason": "the source has no order_lines table"}
    config = related_config(run.settings)
    rules = related_products(orders.lines, config)
    rules.to_parquet(run.dir / RELATED_FILE, index=False)
    entry = {
        "status": "written",
        **orders.report,
        "rules": len(rules),
        "skus_with_related": int(rules["sku"].nunique()),
        "min_support": config.min_support,
        "min_confidence": config.min_confidence,
        "min_lift": config.min_lift,
    }
    log.info("related products: %d rules over %d orders", len(rules), orders.report["orders"])
    return rules, entry


def write_related(run: Run, rules: pd.DataFrame | None) -> int:
    """Replace this run's output key in ``stock_related`` (nothing is written when the step was skipped)."""
    if rules is None:
        return 0
    return run.write("stock_related", rules)


def status_line(report: dict | None) -> str:
    """``related products: ...`` for ``stockml status``."""
    entry = (report or {}).get("related")
    if not entry:
        return "related products: not computed by this run's ingest"
    if entry.get("status") != "written":
        return f"related products: {SKIPPED}"
    return (
        f"related products: {entry['rules']} rules for {entry['skus_with_related']} SKUs from "
        f"{entry['orders']:,} orders in stock_related (min support {entry['min_support']}, "
        f"confidence {entry['min_confidence']}, lift {entry['min_lift']})"
    )
