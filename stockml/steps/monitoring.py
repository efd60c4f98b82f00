"""Monitoring: judge the models and decisions in service; say when a retraining is due, and why.

:func:`monitoring_step` reads what was published (the weekly demand and inventory, the
forecasts of every training cut-off, the classes, the orders, all through the source
connection), the champion's registered levels (its backtest MASE, its data window) and, when
configured, the service's outcome store and its ``/metrics`` and ``/bandit``; it runs the checks
of :mod:`monitoring` (quality, drift, decisions, serving health) and writes one set of rows per
monitored day to ``stock_monitoring`` (replaced when the same day is monitored again).

The verdict is a list of ``reasons`` (``drift``, ``residual_drift``, ``degradation``). A reason
is *due* (the DAG emits the ``stockml_drift`` Asset event that ``stock_training`` is scheduled
on) unless the same reason was due within ``retrain_debounce_hours`` before this day: one
degradation asks for one retraining, not one a day until the new model is in service. Nor is it
due again when the same day is monitored again (a cleared or re-triggered run): that day's
request stands (``requested``, the ``due`` column of its rows) and no second event is emitted.
Which alerts a day sends, each once, is :mod:`stockml.steps.monitoring_alerts`; what became of
their deliveries is recorded by :mod:`stockml.steps.alert_deliveries`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import pandas as pd
import sqlalchemy as sa

from monitoring import decisions as decisions_lib
from monitoring import drift
from monitoring import quality as quality_lib
from monitoring.serving_health import serving_health
from stockml.connections import ensure_default_source, get_hook
from stockml.layout import read_pointer
from stockml.settings import Settings
from stockml.steps.monitoring_alerts import (
    BANDIT_CURSOR,
    REASONS,
    bandit_cursor,
    build_alerts,
    decisions_to_alert,
    flagged_on,
    newest_mark,
)
from training.data.store import OutputKey, latest_key, latest_output, read_output, write_output

log = logging.getLogger("stockml.monitoring")

PIPELINE = "stock_monitoring"


def monitoring_step(
    s: Settings,
    logical_date: dt.datetime | str | None = None,
    run_id: str = "manual",
    pipeline: str = PIPELINE,
    write: bool = True,
) -> dict[str, Any]:
    """Run every check for ``logical_date`` (now by default); returns a JSON-able report.

    ``reasons`` lists what is wrong, ``due`` the reasons not debounced (what a retraining event
    is for), ``demand`` the snapshot judged (its output key and run folder: the triggered
    training adopts it), ``alerts`` what to tell ops. With ``write`` the checks' rows replace
    this day's in ``stock_monitoring``.
    """
    ensure_default_source(s.source_conn_id, s.default_source_db)
    when = _as_utc(logical_date)
    hook = get_hook(s.source_conn_id)
    schema = s.source_schema
    published = latest_output(hook, "stock_weekly_demand", schema)
    if published is None:
        return {"status": "no published weekly demand: run stock_ingest first", "reasons": [], "due": []}
    demand = published.rename(columns={"sku": "unique_id"})[["unique_id", "ds", "y"]]
    demand = demand.assign(ds=pd.to_datetime(demand["ds"]), unique_id=demand["unique_id"].astype(str))
    snapshot = demand_snapshot(s, published)
    champion = champion_levels(s)
    checks: dict[str, dict[str, Any]] = {}

    points = quality_lib.score_points(
        [
            quality_lib.stored_points(_table(hook, "stock_forecasts", schema), demand),
            quality_lib.served_points(*served_records(s), demand),
        ],
        _patterns(hook, schema),
    )
    checks["quality"] = {"flagged": False, "status": "scored", **quality_lib.summarise_quality(points)}
    checks["degradation"] = _degradation(s, points, champion)
    checks.update(drift_checks(s, demand, champion, points))
    drift_snapshot = checks["drift"].pop(SNAPSHOT_KEY, None)
    checks["decisions"] = _decisions(s, hook, demand)
    checks["serving"] = _serving(s)

    history = _history(hook, schema, pipeline)
    reasons = [r for r in REASONS if checks.get(r, {}).get("flagged")]
    asked_today = requested_on(history, when)  # a re-run of this day: its request stands, not sent again
    due = [r for r in reasons if r not in asked_today and not debounced(history, r, when, s.retrain_debounce_hours)]
    since = bandit_cursor(history, when)
    promotions = bandit_promotions(s, since)
    report = {
        "status": "checked",
        "logical_date": when.isoformat(),
        "reasons": reasons,
        "due": due,
        "requested": [r for r in reasons if r in due or r in asked_today],
        "debounced": [r for r in reasons if r not in due],
        "demand": snapshot,
        "champion": champion,
        "checks": checks,
        BANDIT_CURSOR: newest_mark(since, [p["created_at"] for p in promotions]),
        # told by an earlier run of this day: not again, unless every delivery of it failed
        "alerted_today": sorted(flagged_on(history, when, _table(hook, "stock_alert_deliveries", schema))),
    }
    report["alerts"] = build_alerts(
        report, promotions, {"ops dashboard": f"http://{s.dashboards_host}:{s.dashboards_port}"}
    )
    if write:
        write_verdicts(hook, schema, report, OutputKey.of(pipeline, when.date()), run_id)
        from stockml.dashboards import publish_monitoring

        try:  # the dashboard is a view of the verdicts just written: a failure to draw it is logged, not fatal
            publish_monitoring(s, when, checks["quality"].get("by_pattern", []), drift_snapshot)
        except Exception:
            log.exception("monitoring: storing the run's snapshots in the Evidently workspace failed")
    log.info("monitoring done", extra={"reasons": reasons, "due": due})
    return json.loads(json.dumps(report, default=str))


def _as_utc(value: dt.datetime | str | None) -> dt.datetime:
    ts = pd.Timestamp(value) if value is not None else pd.Timestamp.now(tz="UTC")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _table(hook: Any, table: str, schema: str | None) -> pd.DataFrame:
    """Every row of an output table; empty when no run wrote it yet (the table may not exist)."""
    if latest_key(hook, table, schema) is None:
        return pd.DataFrame()
    return read_output(hook, table, None, schema)


def _patterns(hook: Any, schema: str | None) -> pd.Series | None:
    classes = latest_output(hook, "stock_classes", schema)
    return None if classes is None else classes.set_index(classes["sku"].astype(str))["pattern"]


def demand_snapshot(s: Settings, published: pd.DataFrame) -> dict[str, Any]:
    """The output key of the demand judged, and the run folder holding the same data (or None).

    The folder is the ``latest_demand`` pointer's when its ingest report has the same cut-off:
    a training run triggered by this verdict adopts exactly that snapshot.
    """
    first = published.iloc[0]
    snapshot = {"pipeline": str(first["pipeline"]), "cutoff_week": str(first["cutoff_week"]),
                "run_id": str(first["run_id"]), "dir": None}  # fmt: skip
    layout = read_pointer(s.layout.latest_demand)
    if layout is not None and layout.ingest_report.exists():
        last_week = str(pd.Timestamp(layout.read_json(layout.ingest_report)["last_week"]).date())
        if last_week == snapshot["cutoff_week"]:
            snapshot["dir"] = str(layout.root)
    return snapshot


def champion_levels(s: Settings) -> dict[str, Any] | None:
    """The router champion's version, its backtest (holdout) MASE and the last week it was trained on."""
    from stockml.steps.registry import configure_mlflow
    from training.registry import mlflow_registry as reg
    from training.registry.names import ROUTER_MODEL

    configure_mlflow(s)
    version = reg.version_by_alias(ROUTER_MODEL, reg.CHAMPION)
    if version is None:
        return None
    mase = pd.to_numeric(version.tags.get("holdout_mase"), errors="coerce")
    return {
        "version": str(version.version),
        "model_version": f"{ROUTER_MODEL}/v{version.version}",
        "backtest_mase": None if pd.isna(mase) else float(mase),
        "data_end": version.tags.get("data_end"),
        "run_id": version.run_id,
    }


def _degradation(s: Settings, points: pd.DataFrame, champion: dict[str, Any] | None) -> dict[str, Any]:
    if champion is None:
        return {"flagged": False, "status": "no champion in the registry"}
    mine = points[points["model_version"] == champion["model_version"]]
    weekly = quality_lib.group_quality(mine, ["ds"])
    verdict = quality_lib.degradation(weekly, champion["backtest_mase"], s.degradation_ratio, s.degradation_weeks)
    return {"flagged": verdict.pop("degraded"), "model_version": champion["model_version"], **verdict}


SNAPSHOT_KEY = "_evidently_snapshot"


def champion_reference(
    s: Settings, demand: pd.DataFrame, champion: dict[str, Any], ref_end: pd.Timestamp
) -> tuple[pd.DataFrame, str]:
    """The drift reference rows the champion was registered with, else recomputed from ``demand`` at its
    ``data_end`` (a model registered before they were logged); the second value says which."""
    from training.registry import mlflow_registry as reg

    logged = reg.load_drift_reference(champion["run_id"]) if champion.get("run_id") else None
    if logged is not None and set(drift.FEATURES) <= set(logged.columns) and len(logged):
        return logged[list(drift.FEATURES)], "logged with the champion"
    recomputed = drift.reference_features(demand, ref_end, s.drift_window_weeks, s.season_length)
    return recomputed, "recomputed from the source"


def drift_checks(
    s: Settings, demand: pd.DataFrame, champion: dict[str, Any] | None, points: pd.DataFrame
) -> dict[str, dict[str, Any]]:
    """Evidently data drift of the recent demand against the champion's training window, and drift
    of the forecast errors (:mod:`monitoring.drift`): the year-over-year features of the last
    ``drift_window_weeks`` weeks against the same features at the champion's ``data_end``."""
    end = demand["ds"].max()
    ref_end = pd.Timestamp(champion["data_end"]) if champion and champion.get("data_end") else None
    out: dict[str, dict[str, Any]] = {}
    if ref_end is None or ref_end >= end:
        out["drift"] = {"flagged": False, "status": "no weeks since the champion's training data"}
    else:
        reference, origin = champion_reference(s, demand, champion, ref_end)
        current = drift.drift_features(demand, end, s.drift_window_weeks, s.season_length)
        result = drift.data_drift(
            reference, current, drift_share=s.drift_share, threshold=s.drift_threshold, min_effect=s.drift_min_effect
        )
        out["drift"] = {"flagged": bool(result.drifted), "status": "checked", "reference": origin, **result.to_dict()}
        out["drift"][SNAPSHOT_KEY] = result.snapshot  # for the ops dashboard; popped before the report
    recent = points["ds"] > end - pd.Timedelta(weeks=s.drift_window_weeks)
    if recent.all() or not recent.any():
        out["residual_drift"] = {"flagged": False, "status": "not enough forecast errors on both sides"}
    else:
        result = drift.residual_drift(
            points.loc[~recent, "error"], points.loc[recent, "error"], s.drift_threshold, s.drift_min_effect
        )
        out["residual_drift"] = {"flagged": bool(result.drifted), "status": "checked", **result.to_dict()}
    return out


def _decisions(s: Settings, hook: Any, demand: pd.DataFrame) -> dict[str, Any]:
    orders = latest_output(hook, "stock_orders", s.source_schema)
    inventory = latest_output(hook, "stock_weekly_inventory", s.source_schema)
    if orders is None or inventory is None:
        return {"flagged": False, "status": "no orders or inventory published yet", "by_policy": []}
    published = read_pointer(s.layout.latest_demand)
    if published is None or not published.products.exists():
        return {"flagged": False, "status": "no published products (their costs): run stock_ingest", "by_policy": []}
    products = pd.read_parquet(published.products)
    realised = decisions_lib.realised_decisions(
        orders, demand, inventory, products, s.holding_rate_per_year, s.shortage_cost_per_unit
    )
    status = "scored" if len(realised) else "no week observed since the orders yet"
    return {"flagged": False, "status": status, "by_policy": decisions_lib.decisions_by_policy(realised)}


def outcome_engine(s: Settings) -> sa.Engine | None:
    """The service's outcome store (``serving.db_url``, else ``<home>/serving.db`` if it exists)."""
    if s.serving.db_url:
        return sa.create_engine(s.serving.db_url)
    path = s.home.expanduser().resolve() / "serving.db"
    return sa.create_engine(f"sqlite:///{path}") if path.exists() else None


def _outcome_table(engine: sa.Engine | None, table: str) -> pd.DataFrame:
    if engine is None or not sa.inspect(engine).has_table(table):
        return pd.DataFrame()
    with engine.connect() as conn:
        return pd.read_sql_table(table, conn)


def _outcome_tables(s: Settings, *tables: str) -> list[pd.DataFrame]:
    """Each of ``tables`` of the outcome store (empty without a store or the table), over one engine."""
    engine = outcome_engine(s)
    try:
        return [_outcome_table(engine, table) for table in tables]
    finally:
        if engine is not None:
            engine.dispose()


def served_records(s: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``serving_forecasts``, ``serving_feedback``) of the outcome store; empty without one."""
    forecasts, feedback = _outcome_tables(s, "serving_forecasts", "serving_feedback")
    return forecasts, feedback


def bandit_promotions(s: Settings, since: dt.datetime | None) -> list[dict[str, Any]]:
    """The bandit's decisions to alert (promotions, refusals, failures) recorded in the outcome store
    after ``since`` (all of them when None): :func:`~stockml.steps.monitoring_alerts.decisions_to_alert`."""
    (rows,) = _outcome_tables(s, "serving_bandit_decisions")
    return decisions_to_alert(rows, since)


def _serving(s: Settings) -> dict[str, Any]:
    if not s.monitoring_service_url:
        return {"flagged": False, "status": "not configured (monitoring_service_url)"}
    import httpx

    url = s.monitoring_service_url.rstrip("/")
    headers = {"Authorization": f"Bearer {s.monitoring_service_api_key}"} if s.monitoring_service_api_key else {}
    try:
        metrics = httpx.get(f"{url}/metrics", timeout=30)
        metrics.raise_for_status()
        bandit = httpx.post(f"{url}/bandit", json={}, headers=headers, timeout=30)
        state = bandit.json() if bandit.status_code == 200 else None
    except httpx.HTTPError as exc:
        return {"flagged": False, "status": f"unreachable: {exc}"}
    return {"flagged": False, "status": "read", **serving_health(metrics.text, state)}


def _history(hook: Any, schema: str | None, pipeline: str) -> pd.DataFrame:
    rows = _table(hook, "stock_monitoring", schema)
    return rows[rows["pipeline"] == pipeline] if not rows.empty else rows


def debounced(history: pd.DataFrame, reason: str, when: dt.datetime, hours: float) -> bool:
    """True when ``reason`` was due on another monitored day within ``hours`` before ``when``."""
    if history.empty or hours <= 0:
        return False
    rows = history[(history["check_name"] == reason) & history["due"].astype(bool)]
    at = pd.to_datetime(rows["logical_date"], utc=True)
    now = pd.Timestamp(when)
    return bool(((at < now) & (at >= now - pd.Timedelta(hours=hours))).any())


def requested_on(history: pd.DataFrame, when: dt.datetime) -> set[str]:
    """The reasons a retraining was already requested for on ``when``'s day (by an earlier run of that day)."""
    if history.empty:
        return set()
    day = history[(history["cutoff_week"] == when.date().isoformat()) & history["due"].astype(bool)]
    return set(day["check_name"]) & set(REASONS)


def write_verdicts(hook: Any, schema: str | None, report: dict[str, Any], key: OutputKey, run_id: str) -> int:
    """Replace this day's rows in ``stock_monitoring``: one per check, plus the day's ``summary``."""
    when = pd.Timestamp(report["logical_date"]).tz_convert("UTC").tz_localize(None)
    rows = [
        {"check_name": name, "flagged": bool(c.get("flagged")), "due": name in report["requested"],
         "status": str(c.get("status")), "figures": json.dumps(c, default=str)}
        for name, c in report["checks"].items()
    ]  # fmt: skip
    summary = {
        k: report.get(k) for k in ("reasons", "due", "requested", "debounced", "demand", "champion", BANDIT_CURSOR)
    }
    rows.append(
        {"check_name": "summary", "flagged": bool(report["reasons"]), "due": bool(report["requested"]),
         "status": ", ".join(report["reasons"]) or "healthy", "figures": json.dumps(summary, default=str)}
    )  # fmt: skip
    frame = pd.DataFrame(rows).assign(logical_date=when, demand_cutoff_week=report["demand"]["cutoff_week"])
    return write_output(hook, "stock_monitoring", frame, key, run_id, schema)


def event_extra(report: dict[str, Any]) -> dict[str, Any]:
    """The ``stockml_drift`` Asset event's extra: why, the figures judged, and the demand snapshot
    (``dir``: the run folder the triggered training adopts)."""
    checks = report["checks"]
    figures = {r: {k: v for k, v in checks[r].items() if k != "flagged"} for r in report["due"]}
    return {
        "reasons": report["due"],
        "figures": json.loads(json.dumps(figures, default=str)),
        "demand": report["demand"],
        "dir": report["demand"]["dir"],
        "logical_date": report["logical_date"],
    }
