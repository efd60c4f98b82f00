"""The single-member model format (``stockml-lstm``): saved as data, read back to the same forecasts,
unknown formats refused with a message naming what was found and what is read."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from training.forecasting.zoo import ModelZoo
from training.registry.member_model import MemberModel, load_member_model, save_member_model
from training.router.storage import ModelFormatError

TINY = {"max_steps": 3, "val_check_steps": 3, "input_size": 8, "batch_size": 4, "windows_batch_size": 8,
        "encoder_hidden_size": 4, "decoder_hidden_size": 4, "encoder_n_layers": 1}  # fmt: skip


@pytest.fixture(scope="module")
def fitted() -> tuple[MemberModel, pd.DataFrame]:
    rng = np.random.default_rng(0)
    ds = pd.date_range("2025-01-06", periods=30, freq="W-MON")
    hist = pd.concat(
        [pd.DataFrame({"unique_id": f"S{i}", "ds": ds, "y": rng.poisson(2 + i, 30).astype(float)}) for i in range(3)]
    )
    zoo = ModelZoo(["LSTM"], params={"LSTM": TINY}, horizon=3).fit(hist)
    return MemberModel(zoo, {"data_end": "2025-07-28"}), hist


def test_round_trip_gives_the_same_forecasts(fitted, tmp_path):
    model, hist = fitted
    manifest = json.loads(save_member_model(model, tmp_path / "m").read_text())
    assert manifest["format"] == "stockml-member" and manifest["method"] == "LSTM" and manifest["horizon"] == 3
    assert manifest["members"][0]["state"]["weights"] == "weights.pt"
    loaded = load_member_model(tmp_path / "m")
    assert loaded.info == {"data_end": "2025-07-28"} and loaded.horizon == 3
    pd.testing.assert_frame_equal(loaded.predict(hist, 3), model.predict(hist, 3))
    fc = loaded.predict(hist, 2)
    assert list(fc["step"].unique()) == [1, 2] and fc["yhat"].notna().all()


def test_unknown_format_is_refused(fitted, tmp_path):
    model, _ = fitted
    path = save_member_model(model, tmp_path / "m")
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ModelFormatError, match=r"version 99.*reads 'stockml-member' version\(s\) 1"):
        load_member_model(tmp_path / "m")
    with pytest.raises(ModelFormatError, match="not a saved stockml member model"):
        load_member_model(tmp_path / "nothing")
