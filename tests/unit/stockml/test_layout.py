"""The run folder and the home folder as a declared interface (stockml.layout), and the pointers."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

from stockml.layout import HomeLayout, RunLayout, read_pointer, write_pointer
from stockml.maintenance import forecast_performance, prune_runs, publish_demand, publish_forecasts
from stockml.settings import Settings


def test_every_artifact_lives_under_the_run_folder(tmp_path):
    run = RunLayout(tmp_path / "r1")
    paths = [
        getattr(run, name)
        for name, attr in vars(RunLayout).items()
        if isinstance(attr, property) and isinstance(getattr(run, name), Path)
    ]
    assert len(paths) >= 18 and len({p.name for p in paths}) == len(paths)
    assert all(p.parent == run.root for p in paths)
    report = run.router_report
    assert report.root == run.root / "router_report"
    assert {report.html.parent, report.table("overall").parent, report.forecast_plot.parent} == {report.root}
    assert run.demand_files == (run.demand, run.products, run.ingest_report)
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.root = tmp_path  # type: ignore[misc]


def test_home_layout_and_settings_agree(tmp_path):
    s = Settings(home=tmp_path / "home")
    home = s.layout
    assert home == HomeLayout(tmp_path / "home")
    assert s.runs_dir == home.runs and s.default_source_db == home.source_db
    assert s.ground_truth_path == home.ground_truth
    assert s.tracking_uri == f"sqlite:///{home.mlflow_db.resolve()}"
    assert s.optuna_url == f"sqlite:///{home.optuna_db.resolve()}"
    assert home.run("x").root == home.runs / "x"


def test_one_writer_and_one_reader_for_the_pointers(tmp_path):
    s = Settings(home=tmp_path / "home")
    assert read_pointer(s.layout.latest_demand) is None
    run_dir = s.layout.run("ingest-1").root
    run_dir.mkdir(parents=True)
    pointer = publish_demand(s, "ingest-1", run_dir)
    assert pointer == s.layout.latest_demand
    assert json.loads(pointer.read_text()) == {"run_id": "ingest-1", "dir": str(run_dir.resolve())}
    assert read_pointer(pointer) == RunLayout(run_dir.resolve())
    assert publish_forecasts(s, "train-1", run_dir) == s.layout.latest_forecasts
    assert write_pointer(tmp_path / "p.json", "r", run_dir).exists()


def test_pruning_keeps_what_the_pointers_refer_to(tmp_path):
    s = Settings(home=tmp_path / "home")
    old = time.time() - 10 * 86400
    for name in ("served", "adopted", "stale"):
        d = s.layout.run(name).root
        d.mkdir(parents=True)
        os.utime(d, (old, old))
    publish_forecasts(s, "served", s.layout.run("served").root)
    publish_demand(s, "adopted", s.layout.run("adopted").root)
    assert prune_runs(s, 5, dry_run=True) == ["stale"]
    assert prune_runs(s, 5) == ["stale"]
    assert sorted(p.name for p in s.layout.runs.iterdir()) == ["adopted", "served"]


def test_monitoring_without_published_runs_judges_nothing(tmp_path):
    report = forecast_performance(Settings(home=tmp_path / "home"), 1.5)
    assert report == {"status": "no forecasts or demand published yet", "degraded": False}
