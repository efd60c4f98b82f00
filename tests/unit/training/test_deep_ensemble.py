"""The deep members' ensembles (``ensemble``: several networks, combined by the median).

Tiny networks for a few steps on a few series: the combination, determinism and the carried state are
under test, not the accuracy (bench/RESULTS.md has that).
"""

import json

import numpy as np
import pandas as pd
import pytest

from training.forecasting import deep_ensemble
from training.forecasting.deep import COMMON_PARAMS, KIND_PARAMS, NeuralMember
from training.forecasting.zoo import ModelZoo

TINY = {"max_steps": 8, "val_check_steps": 4, "batch_size": 8, "windows_batch_size": 32, "mlp_width": 16}
ENSEMBLE = [{"input_size": 8}, {"input_size": 16}, {"input_size": 16, "random_seed": 2}]
ALLOWED = COMMON_PARAMS + KIND_PARAMS["NBEATS"]


def _panel(n_ids=4, n=40, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_ids):
        t = np.arange(n)
        y = rng.poisson((2 + 3 * i) * (1 + 0.5 * np.sin(2 * np.pi * t / 13))).astype(float)
        ds = pd.date_range("2024-01-01", periods=n, freq="W-MON")
        frames.append(pd.DataFrame({"unique_id": f"S{i}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def _zoo(params, kind="NBEATS"):
    return ModelZoo(methods=[kind], horizon=4, params={kind: {**TINY, **params}})


def test_expand_takes_a_list_of_overrides_or_the_product_of_a_dict_of_lists():
    assert deep_ensemble.expand((), ALLOWED) == () and deep_ensemble.expand(None, ALLOWED) == ()
    assert deep_ensemble.expand([{"input_size": 26}, {"loss": "smape"}], ALLOWED) == (
        {"input_size": 26},
        {"loss": "smape"},
    )
    grid = deep_ensemble.expand({"input_size": [26, 52], "loss": ["mae", "smape"], "random_seed": 3}, ALLOWED)
    assert grid == (
        {"input_size": 26, "loss": "mae", "random_seed": 3},
        {"input_size": 26, "loss": "smape", "random_seed": 3},
        {"input_size": 52, "loss": "mae", "random_seed": 3},
        {"input_size": 52, "loss": "smape", "random_seed": 3},
    )
    for bad in ([{"refit_every": 2}], [{"ensemble": []}], [{"depth": 3}], {"horizon": [4]}):
        with pytest.raises(ValueError, match="per-network"):
            deep_ensemble.expand(bad, ALLOWED)
    with pytest.raises(ValueError, match="list of dicts"):
        deep_ensemble.expand([26, 52], ALLOWED)


def test_a_network_override_is_checked_when_the_member_is_built_not_at_fit():
    with pytest.raises(ValueError, match="loss"):
        NeuralMember(kind="NBEATS", ensemble=[{"input_size": 26}, {"loss": "huber"}])
    assert NeuralMember(kind="NBEATS").ensemble == ()  # the default: one network, as before


def test_median_combine_is_the_per_row_median_and_refuses_other_rows():
    keys = pd.DataFrame({"unique_id": ["a", "a", "b"], "ds": [1, 2, 1]})
    rows = (np.array([1.0, 5.0, 9.0]), np.array([3.0, 4.0, 0.0]), np.array([2.0, 6.0, 1.0]))
    frames = [keys.assign(yhat=v, lo80=v - 1.0) for v in rows]
    out = deep_ensemble.median_combine(frames)
    assert list(out.columns) == ["unique_id", "ds", "yhat", "lo80"]
    np.testing.assert_array_equal(out["yhat"], [2.0, 5.0, 1.0])
    np.testing.assert_array_equal(out["lo80"], [1.0, 4.0, 0.0])
    np.testing.assert_array_equal(deep_ensemble.median_combine(frames[:2])["yhat"], [2.0, 4.5, 4.5])
    with pytest.raises(RuntimeError, match="different rows"):
        deep_ensemble.median_combine([frames[0], frames[1].iloc[::-1].reset_index(drop=True)])


@pytest.fixture(scope="module")
def fitted():
    pytest.importorskip("neuralforecast")
    panel = _panel()
    return panel, _zoo({"ensemble": ENSEMBLE}).fit(panel)


def test_fit_trains_one_network_per_override_and_predicts_their_median(fitted):
    panel, zoo = fitted
    member = zoo.fitted_["NBEATS"]
    assert [m.input_size for m in member.members_] == [8, 16, 16]
    assert [m.random_seed for m in member.members_] == [1, 1, 2]
    assert member.capabilities.native_intervals  # every network has MQLoss bounds
    fc = zoo.predict(4)
    assert list(fc.columns) == ["unique_id", "ds", "method", "yhat", "lo80", "hi80", "lo95", "hi95"]
    assert len(fc) == 4 * 4 and fc[["yhat", "lo95", "hi95"]].notna().all().all()
    assert (fc["lo95"] <= fc["lo80"]).all() and (fc["lo80"] <= fc["yhat"]).all()
    assert (fc["yhat"] <= fc["hi80"]).all() and (fc["hi80"] <= fc["hi95"]).all()
    each = np.stack([m.predict(4, (80, 95), panel)[["yhat", "lo80", "hi95"]].to_numpy() for m in member.members_])
    np.testing.assert_allclose(fc[["yhat", "lo80", "hi95"]].to_numpy(), np.median(each, axis=0))
    assert not np.allclose(each[0], each[1])  # three different networks, not one three times


def test_seeded_ensemble_repeats(fitted):
    panel, zoo = fitted
    again = _zoo({"ensemble": ENSEMBLE}).fit(panel).predict(4)
    pd.testing.assert_frame_equal(zoo.predict(4), again)


def test_state_round_trip_one_state_dict_per_network(fitted, tmp_path):
    import torch

    panel, zoo = fitted
    before = zoo.predict(4)
    entries = zoo.save(tmp_path)
    folder = tmp_path / "NBEATS"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["config.json", "weights_00.pt", "weights_01.pt", "weights_02.pt"]
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == NeuralMember.ENSEMBLE_FORMAT and config["params"]["ensemble"] == ENSEMBLE
    for name in config["weights"]:  # plain tensors, no pickled objects
        assert all(isinstance(v, torch.Tensor) for v in torch.load(folder / name, weights_only=True).values())
    loaded = ModelZoo.load(tmp_path, json.loads(json.dumps(entries)))
    pd.testing.assert_frame_equal(before, loaded.predict(4, panel=panel))
    short = {**config, "weights": config["weights"][:2]}
    with pytest.raises(ValueError, match="do not match its ensemble"):
        NeuralMember(kind="NBEATS").load_state(folder, short)


def test_a_point_loss_network_means_no_native_intervals():
    pytest.importorskip("neuralforecast")
    zoo = _zoo({"ensemble": [{"loss": "mae", "input_size": 8}, {"loss": "smape", "input_size": 8}]}, kind="NHITS")
    panel = _panel(n_ids=3)
    member = zoo.fit(panel).fitted_["NHITS"]
    assert not member.capabilities.native_intervals
    out = member.predict(4, level=(80,), panel=panel)
    assert out["yhat"].notna().all() and out["lo80"].isna().all()
