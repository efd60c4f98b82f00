"""What became of a monitored day's alerts: one row per alert and channel in ``stock_alert_deliveries``.

``notify_ops`` (``dags/stock_monitoring.py``) sends the day's alerts through
:func:`stockml_airflow.notifications.notify_all`, which hands every delivery (ok or failed) to
:func:`record_deliveries` before it decides whether the task fails. Without these rows a
delivery was only in the task log and the XCom; here ops can query it beside the verdicts
(``stockml show stock_alert_deliveries``, or SQL on the source database): alert kind, severity,
title, channel, the redacted target, ok, attempts, last status, error and when.

**Why a sibling table and not rows of ``stock_monitoring``.** A write replaces every row of its
output key, and both tables are keyed by the monitored day: delivery rows inside
``stock_monitoring`` would be erased by a re-run of ``check`` (and the notify task's write would
erase the verdicts), and that table's row key (``check_name``) holds one row per check where a day
has one delivery per alert and channel. ``stock_alert_deliveries`` has the same output key
(``pipeline``, the day as ``cutoff_week``), so the two join on it, and its own row key
(``alert_id``, ``channel``).

**Re-runs.** The rows are keyed by the monitored day, not the run id, as every output is. A write
replaces the rows of the alerts it sends again (a retried or cleared ``notify_ops`` sends the same
alerts: same :meth:`~monitoring.alerts.Alert.fingerprint`, so one set of rows, never two) and keeps
those of the day's other alerts (a re-run of ``check`` alerts only what the day's first run did not,
and must not erase the record of what that run sent). The write itself is the store's: one
transaction on SQL (delete the day's rows, insert), one ``INSERT OVERWRITE`` of the day's partition
on Hive.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from stockml.connections import ensure_default_source, get_hook
from stockml.settings import Settings
from training.data.store import OutputKey, open_store

TABLE = "stock_alert_deliveries"
PIPELINE = "stock_monitoring"
FIELDS = ("alert_id", "channel", "kind", "severity", "title", "target", "ok", "attempts", "status", "error", "at")
ROW_KEY = ["alert_id", "channel"]


def _utc_naive(value: Any) -> pd.Timestamp:
    """``value`` as a naive UTC timestamp (how the output tables keep times); NaT when missing."""
    ts = pd.to_datetime(value, utc=True, errors="coerce")
    return ts.tz_localize(None) if not pd.isna(ts) else pd.NaT


def delivery_rows(deliveries: list[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows of ``deliveries`` (what ``notify_all`` returns: a :class:`~monitoring.delivery.Delivery`
    as a dict, with its alert's ``alert_id``, ``kind``, ``severity`` and ``title``). Raises ValueError
    naming what is missing, since a row without its alert or channel could not be replaced later."""
    records = []
    for i, d in enumerate(deliveries):
        missing = [f for f in ("alert_id", "channel", "ok") if d.get(f) is None]
        if missing:
            raise ValueError(f"delivery {i} has no {', '.join(missing)}: {dict(d)}")
        records.append({f: d.get(f) for f in FIELDS})
    frame = pd.DataFrame(records, columns=list(FIELDS))
    frame = frame.drop_duplicates(ROW_KEY, keep="last")  # one alert sent twice in one call: its last outcome
    return frame.assign(
        ok=frame["ok"].astype(bool),
        attempts=pd.to_numeric(frame["attempts"], errors="coerce").astype("Int64"),
        status=pd.to_numeric(frame["status"], errors="coerce").astype("Int64"),
        delivered_at=[_utc_naive(v) for v in frame["at"]],
    ).drop(columns="at")


def merged(previous: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """The day's rows after a send: ``new``, and of ``previous`` the rows of the alerts not sent again."""
    if previous.empty:
        return new.reset_index(drop=True)
    kept = previous[~previous["alert_id"].isin(set(new["alert_id"]))]
    kept = kept[[c for c in new.columns if c in kept.columns]]
    return pd.concat([kept, new], ignore_index=True) if len(kept) else new.reset_index(drop=True)


def write_deliveries(
    target: Any,
    schema: str | None,
    deliveries: list[Mapping[str, Any]],
    logical_date: dt.datetime | str,
    run_id: str,
    pipeline: str = PIPELINE,
) -> int:
    """Record ``deliveries`` as the rows of ``logical_date``'s day (see the module docstring for what a
    re-run replaces); ``target`` is an engine, a provider hook or a store. Returns the day's rows."""
    when = _utc_naive(logical_date)
    if pd.isna(when):
        raise ValueError(f"the alert deliveries need the monitored day, got {logical_date!r}")
    key = OutputKey.of(pipeline, when.date())
    new = delivery_rows(deliveries).assign(logical_date=when)
    with open_store(target) as store:
        keys = store.keys(TABLE, schema)
        present = bool(((keys["pipeline"] == key.pipeline) & (keys["cutoff_week"] == key.cutoff_week)).any())
        previous = store.read(TABLE, None, schema, key) if present else pd.DataFrame()
        return store.write(TABLE, merged(previous, new), key, run_id, schema)


def record_deliveries(
    s: Settings,
    logical_date: dt.datetime | str,
    deliveries: list[Mapping[str, Any]],
    run_id: str,
    pipeline: str = PIPELINE,
) -> int:
    """:func:`write_deliveries` to the source connection, where ``stock_monitoring``'s rows are."""
    ensure_default_source(s.source_conn_id, s.default_source_db)
    return write_deliveries(get_hook(s.source_conn_id), s.source_schema, deliveries, logical_date, run_id, pipeline)
