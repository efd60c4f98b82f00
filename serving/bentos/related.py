"""Related products for ``/classify``: the rules of ``stock_related``, read through the source connection.

The ingest step writes the rules (:mod:`stockml.steps.related`); the service reads the latest set
(the newest data cut-off) through the same Airflow connection as the pipeline, never from a run
folder, and keeps it for ``ttl_s`` seconds (:class:`~serving.bentos.source_lookup.TtlLookup`). A source
without ``stock_related`` (no order lines) gives every SKU an empty list; a failed read keeps the
previous set and is logged.
"""

from __future__ import annotations

from collections.abc import Callable

from serving.bentos.source_lookup import DEFAULT_TTL_S, TtlLookup, source_hook
from stockml.settings import Settings

RelatedMap = dict[str, list[dict]]
MAX_RELATED = 10


def source_loader(settings: Settings) -> Callable[[], RelatedMap]:
    """Read ``stock_related`` through the settings' source connection."""

    def load() -> RelatedMap:
        from training.data.related_store import latest_related, related_by_sku

        rules = latest_related(source_hook(settings), settings.source_schema)
        return related_by_sku(rules, MAX_RELATED)

    return load


class RelatedLookup(TtlLookup[RelatedMap]):
    """{sku: [{sku, confidence, lift}, ...]}, loaded on first use and again after ``ttl_s`` seconds."""

    what = "stock_related"

    def __init__(self, load: Callable[[], RelatedMap], ttl_s: float = DEFAULT_TTL_S) -> None:
        super().__init__(load, {}, ttl_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> RelatedLookup:
        return cls(source_loader(settings))
