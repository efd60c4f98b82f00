"""The router model stored as data: it loads in a fresh process, and an unknown format is refused.

Why these tests: a registered champion must survive refactors of this package (no pickle of our
classes), and a model saved by a newer stockml must be refused with a message saying which format
version it has and which this one reads, not with a stack trace from deep inside a loader.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from training.router.predict import RouterModel, fit_members
from training.router.storage import FORMAT_VERSION, ModelFormatError, load_router, save_router
from training.router.train import train_router


@pytest.fixture(scope="module")
def saved(router_data, tmp_path_factory) -> tuple[Path, RouterModel]:
    t = train_router(router_data["demand"], router_data["backtest"], season_length=52)
    zoo = fit_members(router_data["demand"], t.router.methods_, 52, t.horizon)
    model = RouterModel.from_training(t, {"data_end": "2026-11-16"}, {}, zoo)
    folder = tmp_path_factory.mktemp("model") / "router"
    save_router(model, folder)
    return folder, model


def test_the_saved_model_is_files_in_library_formats_not_pickles(saved):
    folder, model = saved
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"manifest.json", "router/booster.json", "quantiles.parquet"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".cloudpickle"))]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert [m["method"] for m in manifest["members"]] == list(model.router.methods_)


def test_a_saved_model_loads_in_a_fresh_process_and_forecasts_the_same(saved, router_data, tmp_path):
    folder, model = saved
    hist = router_data["demand"][router_data["demand"]["unique_id"].isin(["SKU-00001", "SKU-00002"])]
    assert hist["unique_id"].nunique() == 2
    hist.to_parquet(tmp_path / "hist.parquet", index=False)
    code = (
        "import sys, pandas as pd\n"
        "from training.router.storage import load_router\n"
        "m = load_router(sys.argv[1])\n"
        "m.predict(pd.read_parquet(sys.argv[2]), horizon=6, n_jobs=1).to_parquet(sys.argv[3])\n"
    )
    out = tmp_path / "fc.parquet"
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(tmp_path / "hist.parquet"), str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    expected = model.predict(hist, horizon=6, n_jobs=1)
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_dtype=False)
    same = load_router(folder).predict(hist, horizon=6, n_jobs=1)
    pd.testing.assert_frame_equal(same, expected)


def test_an_unknown_format_version_is_refused_with_both_versions_named(saved, tmp_path):
    folder, _ = saved
    copy = tmp_path / "future"
    subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match=r"version 99.*reads 'stockml-router' version\(s\) 1"):
        load_router(copy)
    with pytest.raises(ModelFormatError, match=r"no manifest\.json"):
        load_router(tmp_path)


def test_a_model_whose_member_is_not_installed_is_refused_by_name(saved, tmp_path):
    folder, _ = saved
    copy = tmp_path / "plugin"
    subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["members"][0]["method"] = "NotInstalledHere"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"NotInstalledHere.*not installed here"):
        load_router(copy)


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_members_in_one_worker_pool_forecast_what_one_process_forecasts(saved, router_data, start_method):
    # Bug caught: the per-series members' SKUs split across one pool's workers (instead of a pool per
    # member) losing, doubling or mixing up a chunk's rows: the forecasts must be the serial ones exactly.
    # And under forkserver (what Airflow tasks use) the pool's zoo must pickle: a member's closure did not.
    import multiprocessing as mp

    _, model = saved
    serial = model.predict(router_data["demand"], n_jobs=1)
    before = mp.get_start_method(allow_none=True)
    mp.set_start_method(start_method, force=True)
    try:
        pooled = model.predict(router_data["demand"], n_jobs=2)
    finally:
        mp.set_start_method(before, force=True)
    pd.testing.assert_frame_equal(serial, pooled, check_exact=True)
