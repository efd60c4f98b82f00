"""``stockml dashboards`` (seed, --background, --stop) and ``stockml report-weekly`` through the real CLI.

The workspace holds real snapshots (:mod:`dashboards_data`: drift reports and forecast error by
pattern from the demo catalogue and a real backtest); the service's outcome store is a SQLite file
with the service's own tables (``serving.bentos.outcome_tables``), and ``stock_orders`` is written
through the real output store into the SQLite source. The orders there are a small hand-made set:
the orders step trains the PPO agent, too slow for this module; ``test_pipeline_cli`` reports on the
rows a real pipeline run wrote. MLflow is the embedded SQLite registry under the home folder.
"""

from __future__ import annotations

import datetime as dt
import json
import re

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
from dashboards_data import patterns_of, populate
from typer.testing import CliRunner

from bench.serving_stack import free_port
from monitoring import workspace as ws
from serving.bentos.outcome_tables import decisions, forecasts, metadata
from stockml.cli import app
from stockml.connections import sqlite_conn_json
from stockml.dashboards import ui_is_up, ui_url
from stockml.layout import write_pointer
from stockml.settings import get_settings
from training.data.output_schema import OutputKey
from training.data.store import write_output

runner = CliRunner()
DATE = "2026-11-22"


def _text(result) -> str:
    return " ".join(result.output.split())


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(tmp_path / "source.db"))
    for var in ("STOCKML_MLFLOW_TRACKING_URI", "STOCKML_EVIDENTLY_WORKSPACE", "STOCKML_REPORTS_DIR", "STOCKML_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def _publish_demand(home, demand: pd.DataFrame) -> None:
    run = home / "runs" / "ingest-1"
    run.mkdir(parents=True)
    demand.to_parquet(run / "demand.parquet")
    write_pointer(home / "latest_demand.json", "ingest-1", run)


def test_seed_stores_one_drift_report_per_data_cutoff(home, router_data):
    _publish_demand(home, router_data["demand"])
    first = runner.invoke(app, ["dashboards", "seed"])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["dashboards", "seed"])
    assert again.exit_code == 0, again.output
    last_week = router_data["demand"]["ds"].max()
    assert ws.snapshot_timestamps(home / "evidently", ws.KIND_DRIFT) == [last_week.to_pydatetime()]
    out = _text(first)
    # no champion in this registry: the weeks before the last 13 are the reference
    current_from = sorted(router_data["demand"]["ds"].unique())[-13]
    assert f"weeks {current_from:%Y-%m-%d}..{last_week:%Y-%m-%d} against" in out
    share = ws.metric_series(home / "evidently", ws.KIND_DRIFT)["value"].iloc[0]
    assert f"drift share {share:.2f}" in out


def test_seed_without_published_demand_says_what_to_run(home):
    result = runner.invoke(app, ["dashboards", "seed"])
    assert result.exit_code == 2
    assert "no published demand yet: run `make pipeline`" in _text(result)
    assert "Traceback" not in result.output


def test_background_ui_starts_answers_and_stops(home, monkeypatch):
    port = free_port()
    monkeypatch.setenv("STOCKML_DASHBOARDS_PORT", str(port))
    started = runner.invoke(app, ["dashboards", "--background"])
    try:
        assert started.exit_code == 0, started.output
        url = ui_url("127.0.0.1", port)
        assert f"Evidently UI: {url}" in _text(started)
        assert ui_is_up(url)
        assert "already up" in _text(runner.invoke(app, ["dashboards", "--background"]))
    finally:
        stopped = runner.invoke(app, ["dashboards", "--stop"])
    assert "Evidently UI stopped" in stopped.output
    assert not (home / "dashboards.pid").exists()


def test_background_ui_on_a_taken_port_says_which_setting_to_change(home, monkeypatch):
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        monkeypatch.setenv("STOCKML_DASHBOARDS_PORT", str(other.getsockname()[1]))
        result = runner.invoke(app, ["dashboards", "--background"])
    assert result.exit_code == 2
    assert "is taken by another program: set STOCKML_DASHBOARDS_PORT" in _text(result)
    assert not (home / "dashboards.pid").exists()


def _outcomes(home) -> None:
    """Requests per alias over three weeks and one promotion, in the service's own tables."""
    engine = sa.create_engine(f"sqlite:///{home / 'serving.db'}")
    metadata.create_all(engine)
    rows, n = [], 0
    for week, (champ, chall) in zip(
        pd.date_range("2026-10-26", periods=3, freq="W-MON"), [(9, 1), (7, 3), (5, 5)], strict=True
    ):
        for alias, count in (("champion", champ), ("challenger", chall)):
            for _ in range(count):
                n += 1
                rows.append(
                    dict(forecast_id=f"f{n}", sku="SKU-00001", model_name="stockml-router", model_version="1",
                         alias=alias, horizon=4, scale=1.0, points="{}", cached=False,
                         created_at=week.to_pydatetime().replace(tzinfo=dt.UTC) + dt.timedelta(days=1))
                )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(forecasts.insert(), rows)
        conn.execute(
            decisions.insert().values(
                model_name="stockml-router", champion_version="1", challenger_version="2", action="promote",
                p_better=0.97, challenger_n=9, details="{}", created_at=dt.datetime(2026, 11, 12, tzinfo=dt.UTC),
            )
        )  # fmt: skip
    engine.dispose()


def _orders(source_db) -> None:
    orders = pd.DataFrame(
        {
            "sku": ["SKU-00001", "SKU-00002", "SKU-00003"],
            "as_of_week": pd.to_datetime(["2026-11-16"] * 3).date,
            "on_hand": [3.0, 0.0, 8.0],
            "order_qty": [5.0, 4.0, 0.0],
            "policy": ["base_stock", "rl_agent", "rl_agent"],
            "expected_cost_per_period": [2.0, 1.25, 0.5],
            "reason": ["", "", ""],
            "model_version": ["", "stockml-rl-agent/v1", "stockml-rl-agent/v1"],
        }
    )
    engine = sa.create_engine(f"sqlite:///{source_db}")
    write_output(engine, "stock_orders", orders, OutputKey.of("stock_training", "2026-11-16"), "r1")
    engine.dispose()


def _charts(page: str) -> list[list[dict]]:
    return [json.loads(p) for p in re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, flags=re.S)]


def test_report_weekly_writes_the_page_and_logs_one_run_per_date(home, router_data):
    dates = populate(home / "evidently", router_data)
    _outcomes(home)
    _orders(home.parent / "source.db")
    result = runner.invoke(app, ["report-weekly", "--date", DATE, "--weeks", "26"])
    assert result.exit_code == 0, result.output
    page_path = home / "reports" / f"weekly-{DATE}.html"
    assert str(page_path) in "".join(result.output.split())  # (rich wraps long paths)
    page = page_path.read_text()
    assert "Live forecast error per demand pattern from the monitoring runs" in page
    charts = _charts(page)
    assert len(charts) == 6  # no served run here: no held-out policy evaluation chart
    # accuracy over time: a line per pattern of the catalogue, a point per monitoring date
    over_time = {t["name"]: t["x"] for t in charts[1]}
    assert set(over_time) == set(patterns_of(router_data["demand"]))
    assert all(len(x) == len(dates) for x in over_time.values())
    # drift: the workspace's shares, in time order
    stored = ws.metric_series(home / "evidently", ws.KIND_DRIFT)
    assert charts[2][0]["y"] == pytest.approx(stored["value"].tolist())
    # bandit: the challenger's weekly share 1/10, 3/10, 5/10; the promotion at P = 0.97
    traffic = {t["name"]: t["y"] for t in charts[3]}
    assert traffic["challenger"] == pytest.approx([0.1, 0.3, 0.5])
    assert charts[4][0]["name"] == "promote" and charts[4][0]["y"] == [0.97]
    # costs: per policy, the sum over its SKUs
    assert {t["name"]: t["y"] for t in charts[5]} == {"base_stock": [2.0], "rl_agent": [1.75]}

    s = get_settings()
    mlflow.set_tracking_uri(s.tracking_uri)
    experiment = mlflow.get_experiment_by_name("stockml-monitoring")
    [run] = mlflow.search_runs([experiment.experiment_id], output_format="list")
    assert run.info.artifact_uri.startswith(s.artifact_root.as_uri())  # under <home>, not ./mlruns
    assert [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "weekly_report")] == [
        f"weekly_report/weekly-{DATE}.html"
    ]
    again = runner.invoke(app, ["report-weekly", "--date", DATE, "--weeks", "26"])
    assert again.exit_code == 0, again.output
    assert [r.info.run_id for r in mlflow.search_runs([experiment.experiment_id], output_format="list")] == [
        run.info.run_id
    ]


def test_report_weekly_on_a_bad_date_is_a_clear_error(home):
    result = runner.invoke(app, ["report-weekly", "--date", "next tuesday"])
    assert result.exit_code == 2
    assert "--date 'next tuesday' is not a date; use YYYY-MM-DD" in _text(result)
    assert "Traceback" not in result.output


def test_a_monitoring_run_hands_its_checks_to_the_workspace(home):
    """What the monitoring step passes (its per-(version, pattern) quality rows, the drift snapshot)
    and what the outcome store holds become the day's snapshots; a rerun of the day replaces them."""
    from stockml.dashboards import publish_monitoring

    _outcomes(home)  # the week before 2026-11-12 holds 5 champion and 5 challenger requests
    by_pattern = [
        {"model_version": "stockml-router/v1", "pattern": "smooth", "mase": 0.9, "mae": 2.0, "points": 120},
        {"model_version": "stockml-router/v1", "pattern": "lumpy", "mase": 1.4, "mae": 1.0, "points": 80},
        {"model_version": "stockml-router/v2", "pattern": "smooth", "mase": 0.5, "mae": 1.0, "points": 10},
    ]
    rng = pd.Series(range(200), dtype=float)
    drift = ws.demand_drift_snapshot(pd.DataFrame({"y": rng % 3}), pd.DataFrame({"y": rng % 7 + 5}))
    when = dt.datetime(2026, 11, 12)
    s = get_settings()
    for _ in range(2):
        stored = publish_monitoring(s, when, by_pattern, drift)
        assert set(stored) == {ws.KIND_QUALITY, ws.KIND_BANDIT, ws.KIND_DRIFT}
    quality = ws.metric_series(s.workspace_dir, ws.KIND_QUALITY).set_index("name")["value"]
    assert quality.to_dict() == pytest.approx(
        {"mae_lumpy": 1.0, "mae_smooth": 2.0, "mase_lumpy": 1.4, "mase_smooth": 0.9}
    )
    bandit = ws.metric_series(s.workspace_dir, ws.KIND_BANDIT).set_index("name")["value"]
    assert bandit.to_dict() == pytest.approx({"share_champion": 0.5, "share_challenger": 0.5})
    assert ws.snapshot_timestamps(s.workspace_dir, ws.KIND_DRIFT) == [when]
    # nothing scored and no traffic that week: nothing stored rather than zeros
    assert publish_monitoring(s, dt.datetime(2026, 6, 1), [], None) == {}
