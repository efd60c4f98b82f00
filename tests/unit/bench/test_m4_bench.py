"""Fast checks of the M4 Weekly benchmark (bench/m4_weekly.py) on the first series of the data.

Why: the benchmark is only worth something if its figures follow M4's definitions. The
checks pin the weekly protocol (Naive2 == Naive, OWA of Naive2 == 1) and recompute Naive's
sMAPE and MASE by hand, independently of the loader, the zoo and the metrics module.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.m4_weekly import DEFAULT_TRAIN, H, holdout_split, load_m4, run_benchmark

ROOT = Path(__file__).resolve().parents[3]
N_SERIES = 20

pytestmark = pytest.mark.skipif(not DEFAULT_TRAIN.exists(), reason=f"M4 data not found at {DEFAULT_TRAIN}")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    train, test = holdout_split(load_m4(DEFAULT_TRAIN, N_SERIES), H)
    return run_benchmark(train, test, ["Naive", "Naive2", "SES", "Theta"], n_jobs=1).set_index("method")


def _hand_naive(path: Path, n_series: int, h: int, drop: int = 0) -> tuple[float, float]:
    """M4 formulas in a plain loop: per-series sMAPE and MASE (lag-1 scale), then the mean.

    ``drop`` last values of each series are cut off first (the validation split)."""
    smapes, mases = [], []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        next(reader)  # header "V1","V2",...
        for i, row in enumerate(reader):
            if i == n_series:
                break
            y = np.array([float(v) for v in row[1:] if v not in ("", "NA", "NaN")])
            y = y[: len(y) - drop]
            train, actual = y[:-h], y[-h:]
            forecast = np.full(h, train[-1])
            smapes.append(np.mean(200 * np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast))))
            scale = np.mean(np.abs(np.diff(train)))
            mases.append(np.mean(np.abs(actual - forecast)) / scale)
    return float(np.mean(smapes)), float(np.mean(mases))


def test_naive_equals_naive2_on_weekly(table: pd.DataFrame) -> None:
    # M4 used frequency 1 for weekly data: no seasonal adjustment, so Naive2 is Naive.
    for col in ("smape", "mase", "owa"):
        assert table.loc["Naive", col] == table.loc["Naive2", col]


def test_naive2_owa_is_one(table: pd.DataFrame) -> None:
    assert table.loc["Naive2", "owa"] == 1.0
    assert set(table.index) == {"Naive", "Naive2", "SES", "Theta"}
    assert (table["n"] == N_SERIES).all()
    assert np.isfinite(table[["smape", "mase", "owa", "seconds"]].to_numpy()).all()


def test_naive_matches_hand_computation(table: pd.DataFrame) -> None:
    smape, mase = _hand_naive(DEFAULT_TRAIN, N_SERIES, H)
    assert math.isclose(table.loc["Naive", "smape"], smape, rel_tol=0, abs_tol=1e-9)
    assert math.isclose(table.loc["Naive", "mase"], mase, rel_tol=0, abs_tol=1e-9)


def test_cli_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "bench.m4_weekly", "--series", "10", "--methods", "Naive,Naive2", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    assert payload["mode"] == "holdout"
    assert payload["n_series"] == 10
    assert set(payload["methods"]) == {"Naive", "Naive2"}
    assert payload["methods"]["Naive2"]["owa"] == 1.0
    assert payload["methods"]["Naive2"]["published"]["smape"] == 9.161
    assert payload["machine"]["nproc"] >= 1
    assert "--series 10" in payload["command"]
    assert "not comparable" in " ".join(proc.stdout.split()).lower()


def test_timesfm_row_is_skipped_with_a_message_without_a_checkpoint(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.m4_weekly", "--series", "5", "--methods", "Naive2", "--timesfm"]
    env = {k: v for k, v in os.environ.items() if k != "STOCKML_TIMESFM_CHECKPOINT"}
    env |= {"HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}  # an empty Hugging Face cache
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "TimesFM skipped: no checkpoint configured (set STOCKML_TIMESFM_CHECKPOINT)" in " ".join(proc.stdout.split())
    # with a checkpoint (random weights here: the row tests the path, its figures mean nothing)
    from timesfm_checkpoint import write_tiny_checkpoint

    out = tmp_path / "results.json"
    env["STOCKML_TIMESFM_CHECKPOINT"] = str(write_tiny_checkpoint(tmp_path / "timesfm"))
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert set(json.loads(out.read_text())["methods"]) == {"Naive2", "TimesFM"}


def test_validation_scores_the_13_weeks_before_the_holdout(tmp_path: Path) -> None:
    """``--validation`` must never see the holdout weeks: Naive's figures there are those of the
    series cut 13 weeks short, computed by hand; it refuses ``--test`` (it scores training weeks)."""
    out = tmp_path / "validation.json"
    cmd = [sys.executable, "-m", "bench.m4_weekly", "--series", "10", "--methods", "Naive", "--validation"]
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(out.read_text())
    assert payload["mode"] == "validation" and "validation" in payload["note"].lower()
    smape, mase = _hand_naive(DEFAULT_TRAIN, 10, H, drop=H)
    assert math.isclose(payload["methods"]["Naive"]["smape"], smape, rel_tol=0, abs_tol=1e-9)
    assert math.isclose(payload["methods"]["Naive"]["mase"], mase, rel_tol=0, abs_tol=1e-9)
    assert smape != _hand_naive(DEFAULT_TRAIN, 10, H)[0]  # other weeks than the holdout's
    proc = subprocess.run([*cmd, "--test", str(DEFAULT_TRAIN)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "cannot be combined with --test" in proc.stderr
