"""End to end through the real CLI (``stockml.cli:app``) on a real SQLite source.

One small demo catalogue (40 SKUs x 120 weeks) is written with ``stockml demo-data`` and
run once with ``stockml run``; the tests then check the summary, the output tables, the
run folder, the forecast bounds, idempotent re-runs, and the exit codes on bad input.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from stockml.cli import app
from stockml.connections import sqlite_conn_json
from stockml.layout import HomeLayout
from training.data.store import read_output, write_source_tables
from training.forecasting.backtest import ALL_GROUPS, add_empirical_intervals
from training.forecasting.methods import method_registry

METHOD_SUBSET = ["Naive", "Naive2", "SES", "TSB", "CrostonSBA", "XGBoost"]
SKUS, WEEKS, HORIZON = 40, 120, 13
# The demo history ends on Sunday 2026-11-22; a fixed cut-off keeps the tests clock-independent.
CUTOFF = "2026-11-22"
DIRTY_REASONS = {"unknown sku", "future date", "negative qty_sold", "duplicated (sku, date)"}
TOL = 1e-6

runner = CliRunner()


def _text(result) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _invoke(*args: str):
    return runner.invoke(app, list(args))


def _env(mp: pytest.MonkeyPatch, root: Path) -> Path:
    """Point stockml and its default source at ``root``; returns the SQLite file."""
    db = root / "home" / "source.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    mp.chdir(root)
    mp.setenv("STOCKML_HOME", str(root / "home"))
    # Set explicitly (not by ensure_default_source) so it is undone after the test.
    mp.setenv("AIRFLOW_CONN_STOCKML_SOURCE", sqlite_conn_json(db))
    mp.setenv("STOCKML_METHODS", json.dumps(METHOD_SUBSET))
    mp.setenv("STOCKML_N_JOBS", "1")
    mp.setenv("STOCKML_AUTOML_TRIALS", "3")
    mp.setenv("STOCKML_ZOO_TRIALS", "2")
    for var in ("STOCKML_SOURCE_SCHEMA", "STOCKML_HORIZON", "STOCKML_BACKTEST_WINDOWS", "STOCKML_DEBUG"):
        mp.delenv(var, raising=False)
    return db


OUTPUTS = ("stock_classes", "stock_forecasts", "stock_quarantine", "stock_weekly_demand", "stock_weekly_inventory")


def _counts(engine: sa.Engine, run_id: str) -> dict[str, int]:
    return {t: len(read_output(engine, t, run_id)) for t in OUTPUTS}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """demo-data + run r1, once for the module."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        db = _env(mp, root)
        gen = _invoke("demo-data", "--skus", str(SKUS), "--weeks", str(WEEKS))
        assert gen.exit_code == 0, gen.output
        res = _invoke("run", "--run-id", "r1", "--cutoff", CUTOFF)
        assert res.exit_code == 0, res.output
        engine = sa.create_engine(f"sqlite:///{db}")
        yield {"root": root, "db": db, "engine": engine, "gen": gen, "run": res}
        engine.dispose()


def test_demo_data_writes_the_source(demo):
    assert "wrote 40 products" in _text(demo["gen"])
    with demo["engine"].connect() as conn:
        products = pd.read_sql("SELECT * FROM products", conn)
        movements = pd.read_sql("SELECT * FROM stock_movements", conn)
    assert len(products) == SKUS
    assert len(movements) > 1000
    assert HomeLayout(demo["root"] / "home").ground_truth.exists()


def test_run_prints_the_summary(demo):
    out = _text(demo["run"])
    for needle in (
        "Source validation · run r1",
        "Products per demand pattern",
        "Backtest accuracy per method",
        "Best method per pattern",
        "Router's top method per SKU",
        "registered stockml-router v1",
        "promoted to champion",
        "stock_classes, stock_forecasts, stock_quarantine",
        "forecast_vs_actual.png",
    ):
        assert needle in out
    for method in METHOD_SUBSET:
        assert method in out
    assert "Traceback" not in out


def test_output_tables(demo):
    engine, run = demo["engine"], HomeLayout(demo["root"] / "home").run("r1")
    report = json.loads(run.ingest_report.read_text())

    classes = read_output(engine, "stock_classes", "r1")
    assert classes["sku"].is_unique
    assert len(classes) == report["skus"] == SKUS
    assert set(classes["pattern"]) <= {"smooth", "erratic", "intermittent", "lumpy"}
    assert set(classes["abc"]) <= {"A", "B", "C"}

    fc = read_output(engine, "stock_forecasts", "r1")
    assert set(fc["sku"]) == set(classes["sku"])
    per_sku = fc.groupby("sku")
    assert (per_sku.size() == HORIZON).all()
    assert (per_sku["step"].apply(lambda s: sorted(s) == list(range(1, HORIZON + 1)))).all()
    first = pd.to_datetime(fc["ds"]).min()
    assert first == pd.Timestamp(report["last_week"]) + pd.Timedelta(weeks=1)
    assert set(fc["method"]) <= set(METHOD_SUBSET)
    # Forecasts come from the registry's champion: the router registered and promoted by this run.
    assert set(fc["model_version"]) == {"stockml-router/v1"}
    assert fc["confidence"].between(0, 1).all()
    assert fc["explanation"].str.contains("because").all()

    q = read_output(engine, "stock_quarantine", "r1")
    assert len(q) == 4
    assert set(q["reason"]) == DIRTY_REASONS
    assert q["reason"].value_counts().eq(1).all()
    assert report["quarantined_by_reason"] == dict.fromkeys(DIRTY_REASONS, 1)
    assert (q.loc[q["reason"] == "unknown sku", "sku"] == "SKU-UNKNOWN").all()


def test_run_folder(demo):
    run = HomeLayout(demo["root"] / "home").run("r1")
    for path in (run.forecast_plot, run.accuracy_by_method, run.accuracy_by_pattern, run.forecasts):
        assert path.stat().st_size > 0, path.name
    assert run.forecast_plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    acc = pd.read_csv(run.accuracy_by_method, index_col=0)
    assert set(acc.index) == set(METHOD_SUBSET)
    assert {"smape", "mase", "owa"} <= set(acc.columns)


def test_forecast_bounds(demo):
    fc = read_output(demo["engine"], "stock_forecasts", "r1")
    bounds = ["lo95", "lo80", "hi80", "hi95"]
    # Every SKU has bounds: empirical intervals fill methods without native ones (SES, TSB, Croston).
    missing = fc[fc[bounds].isna().any(axis=1)]
    assert missing.empty, missing[["sku", "method", "step", *bounds]]
    assert (fc["yhat"] >= 0).all()
    assert (fc[bounds] >= 0).all().all()
    chain = ["lo95", "lo80", "yhat", "hi80", "hi95"]
    for lo, hi in itertools.pairwise(chain):
        bad = fc[fc[lo] > fc[hi] + TOL]
        assert bad.empty, f"{lo} > {hi}:\n{bad[['sku', 'method', 'step', *chain]]}"


def test_empirical_bounds_contain_the_point_forecast():
    """Regression: on intermittent demand most backtest errors are negative (actual 0,
    forecast > 0), so q90 < 0 and the raw conformal hi80 fell below yhat (seen on seeds 1, 3-5
    at 50 SKUs x 130 weeks). Bounds must still nest around yhat."""
    fc = pd.DataFrame(
        {
            "unique_id": ["A", "A", "B"],
            "ds": pd.to_datetime(["2026-11-23", "2026-11-30", "2026-11-23"]),
            "method": ["TSB", "TSB", "SES"],
            "yhat": [4.0, 4.0, 6.0],
            **{c: [float("nan")] * 3 for c in ("lo80", "hi80", "lo95", "hi95")},
        }
    )
    quantiles = pd.DataFrame(
        {
            "method": ["TSB", "TSB", "SES"],
            "group": ["lumpy", "lumpy", "smooth"],
            "step": [1, 2, 1],
            "q025": [-2.0, -2.0, 0.3],  # all errors negative (A) or all positive (B)
            "q10": [-1.9, -1.9, 0.4],
            "q90": [-0.5, -0.2, 0.9],
            "q975": [3.0, -0.1, 1.5],
        }
    )
    out = add_empirical_intervals(
        fc, quantiles, pd.Series({"A": 2.0, "B": 1.0}), pd.Series({"A": "lumpy", "B": "smooth"})
    )
    chain = ["lo95", "lo80", "yhat", "hi80", "hi95"]
    assert out[chain].notna().all().all()
    for lo, hi in itertools.pairwise(chain):
        assert (out[lo] <= out[hi]).all(), (lo, hi, out[chain])
    assert (out[chain] >= 0).all().all()
    assert out.loc[0, "hi95"] == pytest.approx(10.0)  # a positive quantile is still used as is


def test_unseen_pattern_falls_back_to_pooled_quantiles():
    """A SKU whose pattern no backtested SKU had still gets bounds, from all patterns pooled."""
    fc = pd.DataFrame(
        {
            "unique_id": ["C"],
            "ds": pd.to_datetime(["2026-11-23"]),
            "method": ["TSB"],
            "yhat": [3.0],
            **{c: [float("nan")] for c in ("lo80", "hi80", "lo95", "hi95")},
        }
    )
    quantiles = pd.DataFrame(
        {
            "method": ["TSB"],
            "group": [ALL_GROUPS],
            "step": [1],
            "q025": [-1.0],
            "q10": [-0.5],
            "q90": [0.5],
            "q975": [1.0],
        }
    )
    out = add_empirical_intervals(fc, quantiles, pd.Series({"C": 2.0}), pd.Series({"C": "intermittent"}))
    assert out.loc[0, ["lo95", "lo80", "hi80", "hi95"]].tolist() == [1.0, 2.0, 4.0, 5.0]


def test_registry_commands(demo, monkeypatch):
    """models / promote / rollback on the registry that `stockml run` filled."""
    _env(monkeypatch, demo["root"])
    listed = _invoke("models")
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.output and "first" in listed.output  # the promotion note, wrapped by rich
    again = _invoke("promote", "--version", "1")
    assert again.exit_code == 0 and "already champion" in _text(again)
    out = _assert_exit_2(_invoke("rollback"), "replaced no earlier version")
    assert "champion v1" in out
    _assert_exit_2(_invoke("promote", "--version", "99"), "no version 99")
    # (runs before the re-run test below, which registers and promotes v2 and v3)


def test_rerun_over_the_same_data_replaces_the_rows_whatever_the_run_id(demo):
    """Outputs are keyed by (pipeline, data cut-off week): the same run id again, or another run
    id over the same cut-off, leaves one set of rows, now written by the last run."""
    engine = demo["engine"]
    before = _counts(engine, "r1")
    again = _invoke("run", "--run-id", "r1", "--cutoff", CUTOFF)
    assert again.exit_code == 0, again.output
    assert _counts(engine, "r1") == before

    second = _invoke("run", "--run-id", "r2", "--cutoff", CUTOFF)
    assert second.exit_code == 0, second.output
    assert _counts(engine, "r2") == before
    assert _counts(engine, "r1") == dict.fromkeys(before, 0)  # replaced, not kept beside
    for table, n in before.items():
        rows = read_output(engine, table)
        assert len(rows) == n, table
        assert set(rows["pipeline"]) == {"cli"} and set(rows["cutoff_week"]) == {"2026-11-16"}, table

    shown = _invoke("show", "stock_classes", "--run-id", "r2", "--limit", "3")
    assert shown.exit_code == 0, shown.output
    assert "r2" in shown.output and "r1" not in shown.output


# --- bad input: exit code 2, a one-line message, never a traceback -------------------------------


def _all_invalid_source(path: Path) -> None:
    products = pd.DataFrame(
        {
            "sku": ["SKU-1", "SKU-2"],
            "name": ["a", "b"],
            "category": ["Herbicides", "Fungicides"],
            "unit_cost": [1.0, 2.0],
            "unit_price": [1.5, 2.5],
            "lead_time_weeks": [2, 3],
            "min_order_qty": [1, 1],
        }
    )
    dates = pd.date_range("2025-01-06", periods=10, freq="W-MON")
    movements = pd.DataFrame(
        {
            "sku": ["SKU-1"] * 10 + ["SKU-2"] * 10,
            "date": list(dates) * 2,
            "qty_sold": [-3.0] * 20,
            "qty_received": [0.0] * 20,
            "stock_on_hand": [10.0] * 20,
        }
    )
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        write_source_tables(engine, products, movements)
    finally:
        engine.dispose()


def _assert_exit_2(result, *needles: str) -> str:
    out = _text(result)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in out
    assert "error:" in out
    for needle in needles:
        assert needle in out, out
    return out


def test_no_valid_movements_exits_2(tmp_path, monkeypatch):
    _env(monkeypatch, tmp_path)
    bad = tmp_path / "bad.db"
    _all_invalid_source(bad)
    monkeypatch.setenv("AIRFLOW_CONN_STOCKML_BAD", sqlite_conn_json(bad))
    out = _assert_exit_2(_invoke("run", "--source", "stockml_bad", "--run-id", "bad"), "no valid")
    assert "negative qty_sold" in out


def test_no_valid_movements_exits_2_in_a_real_process(tmp_path, monkeypatch):
    """The installed console script: stderr and stdout carry the message, not a traceback."""
    _env(monkeypatch, tmp_path)
    bad = tmp_path / "bad.db"
    _all_invalid_source(bad)
    env = {**os.environ, "AIRFLOW_CONN_STOCKML_BAD": sqlite_conn_json(bad), "COLUMNS": "200"}
    exe = Path(sys.executable).with_name("stockml")
    proc = subprocess.run(
        [str(exe), "run", "--source", "stockml_bad"], capture_output=True, text=True, env=env, timeout=120
    )
    both = proc.stdout + proc.stderr
    assert proc.returncode == 2, both
    assert "no valid" in both
    assert "Traceback" not in both


def test_unknown_method_exits_2_listing_methods(tmp_path, monkeypatch):
    _env(monkeypatch, tmp_path)
    out = _assert_exit_2(_invoke("run", "--methods", "Foo"), "Foo", "unknown method")
    for name in method_registry():
        assert f"'{name}'" in out


def test_undefined_connection_exits_2(tmp_path, monkeypatch):
    _env(monkeypatch, tmp_path)
    monkeypatch.delenv("AIRFLOW_CONN_NOPE", raising=False)
    _assert_exit_2(_invoke("run", "--source", "nope"), "AIRFLOW_CONN_NOPE")


def test_run_without_router_forecasts_each_sku_with_its_backtest_winner(demo):
    res = _invoke("run", "--run-id", "r3", "--cutoff", CUTOFF, "--no-router")
    assert res.exit_code == 0, res.output
    fc = read_output(demo["engine"], "stock_forecasts", "r3")
    per_sku = fc.groupby("sku").size()
    assert len(per_sku) == SKUS and (per_sku == HORIZON).all()
    assert fc["yhat"].notna().all() and (fc["yhat"] >= 0).all()
    selection = pd.read_csv(HomeLayout(demo["root"] / "home").run("r3").selection, index_col="sku")["method"]
    assert set(selection) <= set(METHOD_SUBSET)
