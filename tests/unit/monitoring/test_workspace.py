"""The Evidently workspace of the ops dashboards: project and panels once, snapshots stamped and replaced."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from monitoring import workspace as ws


@pytest.fixture(scope="module")
def drift_snapshot():
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"y": rng.poisson(0.5, 400).astype(float)})
    current = pd.DataFrame({"y": rng.poisson(9, 200).astype(float)})
    return ws.demand_drift_snapshot(reference, current)


def _values(path, kind: str) -> list[dict[str, float]]:
    """{metric column or type: value} of each ``kind`` snapshot, in time order (what the panels plot)."""
    w = ws.open_workspace(path)
    project_id = ws.ensure_project(path)
    runs = sorted((w.get_run(project_id, s) for s in w.list_runs(project_id)), key=lambda r: r.timestamp)
    out = []
    for run in (r for r in runs if kind in r.tags):
        values = {}
        for result in run.metric_results.values():
            loc = result.metric_value_location.metric
            values[loc.params.get("column", loc.params["type"])] = result
        out.append(values)
    return out


def test_project_and_panels_are_created_once(tmp_path):
    first = ws.ensure_project(tmp_path)
    assert ws.ensure_project(tmp_path) == first
    project = ws.open_workspace(tmp_path).search_project(ws.PROJECT_NAME)
    assert len(project) == 1
    titles = [p.title for p in project[0].dashboard.model().panels]
    assert titles == list(ws.PANEL_TITLES)


def test_a_rerun_of_the_same_logical_date_replaces_its_snapshot(tmp_path, drift_snapshot):
    day = dt.datetime(2026, 11, 2)
    first = ws.add_drift_snapshot(tmp_path, drift_snapshot, day)
    second = ws.add_drift_snapshot(tmp_path, drift_snapshot, day)
    ws.add_drift_snapshot(tmp_path, drift_snapshot, day + dt.timedelta(weeks=1))
    ws.add_bandit_snapshot(tmp_path, {"champion": 1, "challenger": 1}, day)  # another kind, same date: kept
    assert first != second
    assert ws.snapshot_timestamps(tmp_path, ws.KIND_DRIFT) == [day, day + dt.timedelta(weeks=1)]
    assert ws.snapshot_timestamps(tmp_path, ws.KIND_BANDIT) == [day]


def test_an_aware_logical_date_is_stored_as_utc(tmp_path):
    aware = pd.Timestamp("2026-11-02 01:00", tz="Europe/Berlin")
    ws.add_bandit_snapshot(tmp_path, {"champion": 3, "challenger": 1}, aware)
    assert ws.snapshot_timestamps(tmp_path, ws.KIND_BANDIT) == [dt.datetime(2026, 11, 2, 0, 0)]


def test_quality_and_bandit_values_are_the_snapshot_metrics(tmp_path):
    per_sku = pd.DataFrame({"pattern": ["smooth", "smooth", "lumpy"], "mase": [0.8, 1.0, 1.7], "mae": [2.0, 4.0, 1.0]})
    ws.add_quality_snapshot(tmp_path, per_sku, "2026-11-02")
    ws.add_bandit_snapshot(tmp_path, {"champion": 30, "challenger": 10}, "2026-11-02")
    [quality] = _values(tmp_path, ws.KIND_QUALITY)
    assert quality["mase_smooth"].value == pytest.approx(0.9)
    assert quality["mae_smooth"].value == pytest.approx(3.0)
    assert quality["mase_lumpy"].value == pytest.approx(1.7)
    assert "mase_erratic" not in quality  # no product of that pattern: no point, not a zero
    [bandit] = _values(tmp_path, ws.KIND_BANDIT)
    assert bandit["share_champion"].value == pytest.approx(0.75)
    assert bandit["share_challenger"].value == pytest.approx(0.25)


def test_the_drift_panel_reads_the_drifted_share(tmp_path, drift_snapshot):
    ws.add_drift_snapshot(tmp_path, drift_snapshot, "2026-11-02")
    [drift] = _values(tmp_path, ws.KIND_DRIFT)
    counted = drift["evidently:metric_v2:DriftedColumnsCount"]
    assert counted.share.value == 1.0  # mean 0.5 to 9, mostly zeros to nearly none: both columns drifted
    # the panel's filter (metric type and label) matches what the UI stores for the share
    [panel] = [p for p in ws._panels() if p.title == ws.DRIFT_TITLE]
    assert panel.values[0].metric == counted.metric_value_location.metric.params["type"]
    assert counted.share.metric_value_location.param == panel.values[0].metric_labels


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: ws.add_quality_snapshot(p, pd.DataFrame({"pattern": ["smooth"], "mase": [1.0]}), "2026-11-02"),
         "lacks columns ['mae']"),
        (lambda p: ws.add_quality_snapshot(p, pd.DataFrame({"pattern": ["odd"], "mase": [1], "mae": [1]}), "2026-11"),
         "unknown demand patterns ['odd']"),
        (lambda p: ws.add_bandit_snapshot(p, {"champion": 1, "shadow": 1}, "2026-11-02"), "unknown aliases ['shadow']"),
        (lambda p: ws.add_bandit_snapshot(p, {"champion": 0, "challenger": 0}, "2026-11-02"), "has no traffic"),
    ],
)  # fmt: skip
def test_bad_input_is_a_clear_error(tmp_path, call, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        call(tmp_path)


def test_a_snapshot_without_the_drift_count_is_refused(tmp_path):
    from evidently import Report
    from evidently.metrics import MeanValue

    other = Report([MeanValue(column="y")]).run(current_data=pd.DataFrame({"y": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="DriftedColumnsCount"):
        ws.add_drift_snapshot(tmp_path, other, "2026-11-02")
