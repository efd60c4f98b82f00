"""TimesFM 2.5 zero-shot behind the forecaster contract, with a randomly initialised checkpoint.

The real weights are not shipped and cannot be downloaded here, so a small model of the same classes
is saved in the release's on-disk format (tests/support/timesfm_checkpoint.py) and read back through
the member's real path: locate the checkpoint, read its architecture from the tensor shapes, load it
with timesfm's ``load_checkpoint``, forecast in batches, map the quantiles to 80/95 % bounds. Without a
checkpoint the member, the backtest and the router model's load each say so plainly.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from timesfm_checkpoint import router_with_timesfm as train_router_with_timesfm
from timesfm_checkpoint import tiny_definition, write_tiny_checkpoint

from training.forecasting import foundation
from training.forecasting.foundation import (
    CHECKPOINT_ENV,
    HF_REPO_ID,
    CheckpointMissing,
    TimesFM,
    architecture,
    checkpoint_status,
    configure,
    quantile_bounds,
)
from training.forecasting.methods import drop_unavailable, method_registry, unavailable_methods
from training.forecasting.zoo import ModelZoo


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("timesfm") / "timesfm-2.5")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No hub, an empty Hugging Face cache, no checkpoint configured unless a test configures one."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(foundation, "_WHERE", foundation._Where(None, tmp_path / "hf-cache"))


def _panel(lengths=(10, 80, 300), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.concat(
        [
            pd.DataFrame({"unique_id": f"S{i}", "ds": pd.date_range("2020-01-06", periods=n, freq="W-MON")}).assign(
                y=rng.poisson(5, n).astype(float)
            )
            for i, n in enumerate(lengths)
        ],
        ignore_index=True,
    )


def test_the_checkpoint_is_the_release_layout_and_its_architecture_is_read_from_it(checkpoint):
    assert {"model.safetensors", "config.json"} <= {p.name for p in checkpoint.iterdir()}
    assert architecture(checkpoint / "model.safetensors") == tiny_definition()
    from timesfm.timesfm_2p5.timesfm_2p5_base import TimesFM_2p5_200M_Definition
    from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch

    # the released configuration gets the package's own class, unchanged
    assert foundation.model_class(TimesFM_2p5_200M_Definition()) is TimesFM_2p5_200M_torch


def test_forecasts_follow_the_contract_with_ordered_native_bounds(checkpoint, monkeypatch):
    configure(checkpoint)  # what get_settings does with STOCKML_TIMESFM_CHECKPOINT
    panel = _panel()
    member = method_registry()["TimesFM"].member()
    assert member.capabilities.native_intervals and not member.capabilities.fits
    fc = member.fit(panel).predict(13, (80, 95))
    assert list(fc.columns) == ["unique_id", "ds", "yhat", "lo80", "hi80", "lo95", "hi95"]
    assert len(fc) == 3 * 13 and fc.groupby("unique_id").size().eq(13).all()
    last = panel.groupby("unique_id")["ds"].max()
    first = fc.groupby("unique_id")["ds"].min()
    assert (first == last + pd.Timedelta(weeks=1)).all()
    assert fc[["yhat", "lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    assert (fc["lo95"] <= fc["lo80"]).all() and (fc["lo80"] <= fc["yhat"]).all()
    assert (fc["yhat"] <= fc["hi80"]).all() and (fc["hi80"] <= fc["hi95"]).all()
    assert (fc["lo95"] >= 0).all()  # non-negative history, non-negative bounds
    # deterministic: again, and after loading the checkpoint afresh
    pd.testing.assert_frame_equal(member.predict(13, (80, 95), panel=panel), fc)
    foundation._MODELS.clear()
    pd.testing.assert_frame_equal(TimesFM(checkpoint=checkpoint).predict(13, (80, 95), panel=panel), fc)


def test_batches_and_context_do_not_change_a_series_forecast(checkpoint):
    panel = _panel(lengths=(40, 60, 90, 120, 200))
    whole = TimesFM(checkpoint=checkpoint, batch_size=64).predict(6, (80,), panel=panel)
    batched = TimesFM(checkpoint=checkpoint, batch_size=2).predict(6, (80,), panel=panel)
    pd.testing.assert_frame_equal(whole, batched, atol=1e-4)
    alone = TimesFM(checkpoint=checkpoint).predict(6, (80,), panel=panel[panel["unique_id"] == "S4"])
    assert np.isfinite(alone["yhat"]).all() and len(alone) == 6


def test_quantile_bounds_read_deciles_and_stretch_past_them():
    q = np.array([[[9.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]])  # mean, then the deciles 0.1 .. 0.9
    assert quantile_bounds(q, 80) == (1.0, 9.0)
    assert quantile_bounds(q, 60) == (2.0, 8.0)
    lo, hi = quantile_bounds(q, 95)
    stretch = 1.959964 / 1.281552
    assert lo.item() == pytest.approx(5 - 4 * stretch, rel=1e-5)
    assert hi.item() == pytest.approx(5 + 4 * stretch, rel=1e-5)


def test_without_a_checkpoint_the_member_names_the_setting_and_how_to_fetch_it(tmp_path, monkeypatch):
    with pytest.raises(CheckpointMissing) as err:
        TimesFM().fit(_panel())
    text = str(err.value)
    assert CHECKPOINT_ENV in text and f"huggingface-cli download {HF_REPO_ID}" in text
    with pytest.raises(CheckpointMissing, match=CHECKPOINT_ENV):
        TimesFM().predict(4, panel=_panel())
    configure(tmp_path)  # set, but the folder holds no weights
    st = checkpoint_status()
    assert not st.available and "holds no model.safetensors" in st.reason
    assert "TimesFM" in unavailable_methods(["Naive", "TimesFM"])


def test_the_hugging_face_cache_is_used_offline_when_the_setting_is_unset(checkpoint, tmp_path, monkeypatch):
    repo = tmp_path / "hf-cache" / f"models--{HF_REPO_ID.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    shutil.copytree(checkpoint, repo / "snapshots" / "abc123")
    st = checkpoint_status()
    assert st.available and st.source == "hf-cache" and st.path.name == "model.safetensors"


def test_the_backtest_drops_timesfm_without_a_checkpoint_and_runs_it_with_one(checkpoint, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING, logger="stockml.forecasting"):
        assert drop_unavailable(["Naive", "TimesFM"]) == ["Naive"]
    assert "TimesFM left out" in caplog.text and CHECKPOINT_ENV in caplog.text
    assert drop_unavailable(None) is None  # the default set, which leaves TimesFM out anyway
    assert "TimesFM" not in ModelZoo().methods
    with pytest.raises(ValueError, match="none of the requested methods"):
        drop_unavailable(["TimesFM"])
    configure(checkpoint)  # what get_settings does with STOCKML_TIMESFM_CHECKPOINT
    assert drop_unavailable(["Naive", "TimesFM"]) == ["Naive", "TimesFM"]
    cv = ModelZoo(["Naive", "TimesFM"], n_jobs=1).cross_validation(_panel(), h=4, n_windows=2, intervals=True)
    tfm = cv[cv["method"] == "TimesFM"]
    assert len(tfm) == 3 * 2 * 4 and tfm[["lo80", "hi95"]].notna().all().all()
    assert (tfm["ds"] > tfm["cutoff"]).all()


def test_methods_import_without_timesfm_or_torch():
    code = (
        "import sys, training.forecasting.methods as m; m.method_registry(); "
        "print('torch' in sys.modules, 'timesfm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False False"


@pytest.fixture(scope="module")
def router_with_timesfm(checkpoint, tmp_path_factory):
    """A router trained on a backtest whose members include TimesFM, saved as the registry stores it."""
    from training.router.storage import save_router

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(foundation, "_WHERE", foundation._Where(None, tmp_path_factory.mktemp("hf-cache")))
        model, _, demand = train_router_with_timesfm(checkpoint)
        folder = tmp_path_factory.mktemp("router") / "router"
        save_router(model, folder)
    return folder, demand


def test_a_router_with_timesfm_is_refused_where_the_checkpoint_is_absent(router_with_timesfm, checkpoint, monkeypatch):
    from training.router.storage import MemberUnavailableError, load_router

    folder, demand = router_with_timesfm
    assert "TimesFM" in [m["method"] for m in json.loads((folder / "manifest.json").read_text())["members"]]
    with pytest.raises(MemberUnavailableError, match=rf"\['TimesFM'\].*{CHECKPOINT_ENV}.*refused"):
        load_router(folder)
    configure(checkpoint)  # what get_settings does with STOCKML_TIMESFM_CHECKPOINT
    hist = demand[demand["unique_id"].isin(demand["unique_id"].unique()[:3])]
    fc = load_router(folder).predict(hist, horizon=4, n_jobs=1)
    assert len(fc) == 3 * 4 and fc["yhat"].notna().all()
