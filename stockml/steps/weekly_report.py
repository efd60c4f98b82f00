"""The weekly report as a pipeline step: read the frames, render the HTML, keep it and log it to MLflow.

Where each section's data comes from:

- accuracy and drift: the Evidently workspace's ``quality`` and ``drift`` snapshots (what the
  monitoring runs stored, see :mod:`monitoring.workspace`). Until monitoring has scored live
  forecasts, accuracy falls back to the served run's backtest (the best method's error per window
  and demand pattern), and the report says so.
- the bandit: ``serving_forecasts`` (requests per alias and week) and ``serving_bandit_decisions``
  in the service's outcome store (``STOCKML_SERVING__DB_URL``, default ``<home>/serving.db``).
- costs: ``stock_orders`` in the source database (every data cut-off's recommendations per policy),
  and the served run's held-out evaluation of every policy (``policy_evaluation.csv``).

The file is ``<reports>/weekly-<date>.html``; the MLflow run (experiment ``stockml-monitoring``) is
tagged with the date, so a rerun for the same date overwrites that run's artifact instead of adding a run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from monitoring import workspace
from monitoring.weekly_report import COST_COLUMNS, DECISION_COLUMNS, EVALUATION_COLUMNS, WeeklyFrames, render
from stockml.layout import read_pointer
from stockml.settings import Settings

REPORT_TAG = "stockml.weekly_report"


@dataclass(frozen=True)
class WeeklyReport:
    path: Path
    run_id: str
    experiment: str


def report_window(date: str | dt.date | None, weeks: int) -> tuple[dt.date, dt.date]:
    """(first day, last day) the report covers: ``weeks`` weeks ending on ``date`` (default today)."""
    try:
        end = pd.Timestamp(date).date() if date is not None else dt.datetime.now(dt.UTC).date()
    except ValueError as exc:
        raise ValueError(f"--date {date!r} is not a date; use YYYY-MM-DD") from exc
    return end - dt.timedelta(weeks=weeks) + dt.timedelta(days=1), end


def _in_window(frame: pd.DataFrame, column: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    days = pd.to_datetime(frame[column], utc=True).dt.tz_localize(None).dt.normalize()
    return frame[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))]


def workspace_frames(ws_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(accuracy, drift) history from the Evidently workspace's snapshots."""
    quality = workspace.metric_series(ws_path, workspace.KIND_QUALITY)
    split = quality["name"].str.split("_", n=1, expand=True) if not quality.empty else None
    if split is None or split.shape[1] < 2:
        accuracy = pd.DataFrame(columns=["ds", "pattern", "mase", "mae"])
    else:
        long = quality.assign(metric=split[0], pattern=split[1])
        accuracy = long.pivot_table(index=["ds", "pattern"], columns="metric", values="value").reset_index()
        accuracy.columns.name = None
    drift = workspace.metric_series(ws_path, workspace.KIND_DRIFT)
    drift = drift[drift["name"] == "drift_share"].rename(columns={"value": "drift_share"})[["ds", "drift_share"]]
    return accuracy, drift


def backtest_accuracy(s: Settings) -> pd.DataFrame:
    """The served run's backtest: the best method's mean MASE/MAE per window end and demand pattern."""
    served = read_pointer(s.layout.latest_forecasts)
    if served is None or not served.backtest_errors.exists() or not served.classes.exists():
        return pd.DataFrame(columns=["ds", "pattern", "mase", "mae"])
    errors = pd.read_parquet(served.backtest_errors)
    patterns = pd.read_parquet(served.classes)["pattern"]
    best = errors.groupby("method")["mase"].mean().idxmin()
    e = errors[errors["method"] == best].assign(pattern=lambda d: d["unique_id"].map(patterns))
    meta = served.read_json(served.backtest_meta) if served.backtest_meta.exists() else {}
    e["ds"] = pd.to_datetime(e["cutoff"]) + pd.Timedelta(weeks=int(meta.get("h", 0)))
    return e.groupby(["ds", "pattern"], as_index=False)[["mase", "mae"]].mean().assign(method=best)


def _table(engine: sa.Engine, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(name):
            return pd.DataFrame(columns=columns or [])
        return pd.read_sql_table(name, conn, columns=columns)


def serving_url(s: Settings) -> str:
    """The service's outcome store (the same default as the service: ``<home>/serving.db``)."""
    return s.serving.db_url or f"sqlite:///{(s.home / 'serving.db').expanduser().resolve()}"


def bandit_frames(url: str, daily: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(requests per alias and week, or day with ``daily``; decisions) from the service's outcome store."""
    engine = sa.create_engine(url)
    try:
        served = _table(engine, "serving_forecasts", ["alias", "created_at"])
        decisions = _table(engine, "serving_bandit_decisions", list(DECISION_COLUMNS))
    finally:
        engine.dispose()
    if served.empty:
        return pd.DataFrame(columns=["ds", "alias", "requests"]), decisions
    at = pd.to_datetime(served["created_at"], utc=True).dt.tz_localize(None)
    traffic = (
        served.assign(ds=at.dt.normalize() if daily else at.dt.to_period("W-SUN").dt.start_time)
        .groupby(["ds", "alias"], as_index=False)
        .size()
        .rename(columns={"size": "requests"})
    )
    return traffic, decisions


def order_costs(s: Settings) -> pd.DataFrame:
    """Every cut-off's rows of ``stock_orders`` (policy and expected cost per SKU), or none."""
    from stockml.run import Run
    from training.data.store import latest_key, read_output

    hook = Run(s, "weekly-report", "reports").hook()
    if latest_key(hook, "stock_orders", s.source_schema) is None:
        return pd.DataFrame(columns=list(COST_COLUMNS))
    return read_output(hook, "stock_orders", schema=s.source_schema)


def policy_evaluation(s: Settings) -> pd.DataFrame:
    """The served run's held-out evaluation of every order policy per SKU (the orders step's CSV), or none."""
    served = read_pointer(s.layout.latest_forecasts)
    if served is None or not served.policy_evaluation.exists():
        return pd.DataFrame(columns=list(EVALUATION_COLUMNS))
    return pd.read_csv(served.policy_evaluation)


def gather(s: Settings, start: dt.date, end: dt.date) -> WeeklyFrames:
    """The report's frames over [start, end] (costs: every cut-off, they are few)."""
    accuracy, drift = workspace_frames(s.workspace_dir)
    accuracy = _in_window(accuracy, "ds", start, end)
    notes = {"accuracy": "Live forecast error per demand pattern from the monitoring runs (Evidently workspace)."}
    if accuracy.empty:  # the backtest is the training-time picture: shown whole, not cut to the window
        accuracy = backtest_accuracy(s)
        method = accuracy["method"].iloc[0] if not accuracy.empty else "?"
        notes["accuracy"] = (
            f"No monitoring run has scored live forecasts yet: the served run's backtest ({method}, the zoo's best "
            "method on mean MASE), one point per backtest window."
        )
    traffic, decisions = bandit_frames(serving_url(s))
    return WeeklyFrames(
        accuracy=accuracy,
        drift=_in_window(drift, "ds", start, end),
        traffic=_in_window(traffic, "ds", start, end),
        decisions=_in_window(decisions, "created_at", start, end),
        costs=order_costs(s),
        evaluation=policy_evaluation(s),
        notes=notes,
    )


def log_to_mlflow(s: Settings, path: Path, end: dt.date) -> str:
    """Log the report as an artifact of the ``monitoring_experiment`` run tagged with its date; the run id."""
    import mlflow

    from training.registry.mlflow_registry import configure

    s.home.mkdir(parents=True, exist_ok=True)
    # (configure: with the embedded store, artifacts go under <home>, not into a ./mlruns of the cwd)
    experiment_id = configure(s.tracking_uri, s.monitoring_experiment, s.artifact_root)
    date = f"{end:%Y-%m-%d}"
    found = mlflow.search_runs([experiment_id], filter_string=f"tags.`{REPORT_TAG}` = '{date}'", output_format="list")
    run_kwargs = {"run_id": found[0].info.run_id} if found else {"run_name": f"weekly-{date}"}
    with mlflow.start_run(experiment_id=experiment_id, **run_kwargs) as run:
        mlflow.set_tag(REPORT_TAG, date)
        mlflow.log_artifact(str(path), artifact_path="weekly_report")
        return run.info.run_id


def weekly_report_step(s: Settings, date: str | dt.date | None = None, weeks: int = 12) -> WeeklyReport:
    """Write ``<reports>/weekly-<date>.html`` and log it to MLflow."""
    start, end = report_window(date, weeks)
    html = render(gather(s, start, end), start, end)
    s.reports_path.mkdir(parents=True, exist_ok=True)
    path = s.reports_path / f"weekly-{end:%Y-%m-%d}.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a report
    return WeeklyReport(path, log_to_mlflow(s, path, end), s.monitoring_experiment)
