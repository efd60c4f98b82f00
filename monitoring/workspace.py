"""The ops dashboards' store: an Evidently local workspace holding the ``stockml`` project.

Every monitoring run adds snapshots stamped with its logical date, so the project's panels plot
drift share, forecast error by demand pattern and the bandit's traffic split *over time* in
``evidently ui``. Three kinds of snapshot, told apart by a tag (the panels filter on it):

- ``drift``: the Evidently data-drift report as it is (``DriftedColumnsCount`` gives the share).
- ``quality``: a one-row frame with a column per (metric, pattern), e.g. ``mase_smooth``, summarised
  by one ``MeanValue`` metric per column. Evidently's panels plot *metric values* of snapshots, so a
  number becomes plottable by being a metric's value; a ``MeanValue`` over one row is that number.
  The alternative (a custom Evidently metric) would have to be importable by the UI process too.
- ``bandit``: the same trick for the share of traffic each alias (champion, challenger) received.

Re-adding a snapshot of the same kind and logical date replaces the earlier one, so a rerun of a
monitoring run never plots a point twice. A plain library: it takes the workspace folder as an
argument and reads no settings.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd
from evidently import Report
from evidently.core.report import Snapshot
from evidently.metrics import MeanValue
from evidently.sdk.models import DashboardPanelPlot, PanelMetric
from evidently.sdk.panels import bar_plot_panel, line_plot_panel
from evidently.ui.workspace import Workspace

PROJECT_NAME = "stockml"
PROJECT_DESCRIPTION = "stockml monitoring: data drift, forecast error by demand pattern, the bandit's traffic split."
TAB = "Monitoring"
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy")
ERROR_METRICS = ("mase", "mae")
ALIASES = ("champion", "challenger")
KIND_DRIFT, KIND_QUALITY, KIND_BANDIT = "drift", "quality", "bandit"

DRIFT_TITLE = "Drift share (share of drifted columns)"
ERROR_TITLES = {"mase": "Forecast error by demand pattern (MASE)", "mae": "Forecast error by demand pattern (MAE)"}
BANDIT_TITLE = "Bandit traffic split (share of requests per alias)"
PANEL_TITLES = (DRIFT_TITLE, ERROR_TITLES["mase"], ERROR_TITLES["mae"], BANDIT_TITLE)


def _panels() -> list[DashboardPanelPlot]:
    """The project's panels, each filtering snapshots by the kind tag its values come from."""
    drift = line_plot_panel(
        title=DRIFT_TITLE,
        description="Evidently DataDriftPreset: share of columns whose distribution drifted from the reference.",
        values=[
            PanelMetric(
                legend="drift share",
                tags=[KIND_DRIFT],
                metric="DriftedColumnsCount",
                metric_labels={"value_type": "share"},
            )
        ],
        size="full",
    )
    errors = [
        line_plot_panel(
            title=ERROR_TITLES[m],
            description=f"Live {m.upper()} of the served forecasts, averaged over the products of each pattern.",
            values=[
                PanelMetric(legend=p, tags=[KIND_QUALITY], metric="MeanValue", metric_labels={"column": f"{m}_{p}"})
                for p in PATTERNS
            ],
            size="half",
        )
        for m in ERROR_METRICS
    ]
    bandit = bar_plot_panel(
        title=BANDIT_TITLE,
        description="Share of forecast requests the champion/challenger bandit sent to each alias.",
        values=[
            PanelMetric(legend=a, tags=[KIND_BANDIT], metric="MeanValue", metric_labels={"column": f"share_{a}"})
            for a in ALIASES
        ],
        size="full",
        stacked=True,
    )
    return [drift, *errors, bandit]


def open_workspace(ws_path: Path | str) -> Workspace:
    """The local workspace at ``ws_path`` (created when missing)."""
    path = Path(ws_path)
    path.mkdir(parents=True, exist_ok=True)
    return Workspace(str(path))


def ensure_project(ws_path: Path | str) -> str:
    """Get or create the ``stockml`` project and add any of its panels that are missing; its id.

    Idempotent: panels are matched by title, so calling it on every monitoring run adds nothing
    once the dashboard is complete (and an operator's own extra panels are left alone)."""
    ws = open_workspace(ws_path)
    found = ws.search_project(PROJECT_NAME)
    project = found[0] if found else ws.create_project(PROJECT_NAME, description=PROJECT_DESCRIPTION)
    present = {panel.title for panel in project.dashboard.model().panels}
    for panel in _panels():
        if panel.title not in present:
            project.dashboard.add_panel(panel, tab=TAB)
    return str(project.id)


def _stamp(timestamp: dt.datetime | dt.date | str) -> dt.datetime:
    """A naive UTC datetime (what Evidently stores and the UI plots) from a logical date."""
    ts = pd.Timestamp(timestamp)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def _add(ws_path: Path | str, snapshot: Snapshot, kind: str, timestamp: dt.datetime | dt.date | str) -> str:
    """Store ``snapshot`` as the ``kind`` snapshot of ``timestamp``, replacing an earlier one; its id."""
    project_id = ensure_project(ws_path)
    ws = open_workspace(ws_path)
    when = _stamp(timestamp)
    for snapshot_id in ws.list_runs(project_id):
        old = ws.get_run(project_id, snapshot_id)
        if old is not None and kind in old.tags and old.timestamp == when:
            ws.delete_run(project_id, snapshot_id)
    payload = snapshot.dump_dict()
    payload["timestamp"] = when
    payload["tags"] = sorted({*payload.get("tags", []), kind})
    payload["name"] = f"{kind} {when:%Y-%m-%d %H:%M}"
    return str(ws.add_run(project_id, Snapshot.load_dict(payload)).id)


def add_drift_snapshot(ws_path: Path | str, snapshot: Snapshot, timestamp: dt.datetime | dt.date | str) -> str:
    """Store a data-drift snapshot (an Evidently report with ``DataDriftPreset``) at ``timestamp``."""
    metrics = {m["config"]["type"] for m in snapshot.dict()["metrics"]}
    if "evidently:metric_v2:DriftedColumnsCount" not in metrics:
        raise ValueError("a drift snapshot needs DriftedColumnsCount (run the report with DataDriftPreset)")
    return _add(ws_path, snapshot, KIND_DRIFT, timestamp)


def _value_snapshot(values: Mapping[str, float], kind: str) -> Snapshot:
    """A snapshot whose metrics are the given numbers, one ``MeanValue`` per name (see the module doc)."""
    finite = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}
    if not finite:
        raise ValueError(f"a {kind} snapshot needs at least one finite value, got {dict(values)}")
    frame = pd.DataFrame({k: [v] for k, v in finite.items()})
    return Report([MeanValue(column=c) for c in frame.columns]).run(current_data=frame)


def quality_values(per_pattern: pd.DataFrame, metrics: Iterable[str] = ERROR_METRICS) -> dict[str, float]:
    """``{"mase_smooth": ..., "mae_lumpy": ...}`` from a frame with a ``pattern`` column and metric columns."""
    missing = {"pattern", *metrics} - set(per_pattern.columns)
    if missing:
        raise ValueError(f"per-pattern quality frame lacks columns {sorted(missing)} (has {list(per_pattern.columns)})")
    unknown = set(per_pattern["pattern"]) - set(PATTERNS)
    if unknown:
        raise ValueError(f"unknown demand patterns {sorted(unknown)}; expected some of {PATTERNS}")
    by_pattern = per_pattern.groupby("pattern")[list(metrics)].mean()
    return {f"{m}_{p}": by_pattern.at[p, m] for p in by_pattern.index for m in metrics}


def add_quality_snapshot(ws_path: Path | str, per_pattern: pd.DataFrame, timestamp: dt.datetime | dt.date | str) -> str:
    """Store forecast error by demand pattern (columns ``pattern``, ``mase``, ``mae``) at ``timestamp``."""
    return _add(ws_path, _value_snapshot(quality_values(per_pattern), KIND_QUALITY), KIND_QUALITY, timestamp)


def add_bandit_snapshot(ws_path: Path | str, split: Mapping[str, float], timestamp: dt.datetime | dt.date | str) -> str:
    """Store the bandit's traffic split ``{"champion": share, "challenger": share}`` at ``timestamp``.

    Counts are accepted too: they are normalised to shares."""
    unknown = set(split) - set(ALIASES)
    if unknown:
        raise ValueError(f"unknown aliases {sorted(unknown)} in the bandit split; expected {ALIASES}")
    total = sum(float(v) for v in split.values())
    if total <= 0:
        raise ValueError(f"the bandit split has no traffic: {dict(split)}")
    shares = {f"share_{a}": float(split.get(a, 0.0)) / total for a in ALIASES}
    return _add(ws_path, _value_snapshot(shares, KIND_BANDIT), KIND_BANDIT, timestamp)


def snapshot_timestamps(ws_path: Path | str, kind: str) -> list[dt.datetime]:
    """The timestamps of the project's ``kind`` snapshots, sorted (what a panel plots on its x axis)."""
    project_id = ensure_project(ws_path)
    ws = open_workspace(ws_path)
    runs = [ws.get_run(project_id, s) for s in ws.list_runs(project_id)]
    return sorted(r.timestamp for r in runs if r is not None and kind in r.tags)


def metric_series(ws_path: Path | str, kind: str) -> pd.DataFrame:
    """What the panels plot, as a frame: ``ds``, ``name``, ``value`` per value of each ``kind`` snapshot.

    ``name`` is the value's column (``mase_smooth``, ``share_champion``) or, for the drift count,
    ``drift_share``; the weekly report reads its drift and accuracy history from here."""
    project_id = ensure_project(ws_path)
    ws = open_workspace(ws_path)
    rows = []
    for snapshot_id in ws.list_runs(project_id):
        run = ws.get_run(project_id, snapshot_id)
        if run is None or kind not in run.tags:
            continue
        for result in run.metric_results.values():
            params = result.metric_value_location.metric.params
            if params["type"].endswith(":MeanValue"):
                rows.append((run.timestamp, params["column"], float(result.value)))
            elif params["type"].endswith(":DriftedColumnsCount"):
                rows.append((run.timestamp, "drift_share", float(result.share.value)))
    return pd.DataFrame(rows, columns=["ds", "name", "value"]).sort_values(["ds", "name"], ignore_index=True)


def demand_drift_snapshot(reference: pd.DataFrame, current: pd.DataFrame) -> Snapshot:
    """Evidently's DataDriftPreset on weekly demand rows (``y`` and whether the week sold at all).

    The first drift report of a fresh installation (``stockml dashboards seed``): the recent weeks of
    published demand against the champion's training window. The monitoring step's own drift engine
    (``monitoring.drift``) supersedes it once monitoring runs; both store through
    :func:`add_drift_snapshot`."""
    from evidently import DataDefinition, Dataset
    from evidently.presets import DataDriftPreset

    def frame(demand: pd.DataFrame) -> Dataset:
        rows = pd.DataFrame({"y": demand["y"].astype(float), "sold": (demand["y"] > 0).map({True: "yes", False: "no"})})
        return Dataset.from_pandas(
            rows, data_definition=DataDefinition(numerical_columns=["y"], categorical_columns=["sold"])
        )

    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs demand on both sides: {len(reference)} reference rows, {len(current)} current rows"
        )
    return Report([DataDriftPreset()]).run(reference_data=frame(reference), current_data=frame(current))
