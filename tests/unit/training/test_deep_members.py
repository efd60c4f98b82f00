"""The deep global members (LSTM, NHITS, NBEATS via neuralforecast): contract, determinism, carried state, backtest.

Trained for a few dozen steps on small panels: the behaviour, not the accuracy, is under test here
(the accuracy is in bench/RESULTS.md).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("neuralforecast")

from training.forecasting.contract import future_ds
from training.forecasting.methods import default_methods, method_registry
from training.forecasting.zoo import ModelZoo

FAST = {"max_steps": 30, "val_check_steps": 10, "batch_size": 16, "windows_batch_size": 64}
FAST_NHITS = {**FAST, "mlp_width": 32}
FAST_LSTM = {**FAST, "encoder_hidden_size": 16, "decoder_hidden_size": 16}
FAST_NBEATS = {**FAST, "mlp_width": 32}
PARAMS = {"NHITS": FAST_NHITS, "LSTM": FAST_LSTM, "NBEATS": FAST_NBEATS}


def _panel(n_ids=12, n=80, seed=0, start="2023-01-02", short=()):
    """Seasonal Poisson demand at different scales, some with zero weeks; ``short`` ids get 20 weeks only."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n_ids):
        length = 20 if i in short else n
        t = np.arange(length)
        y = rng.poisson((0.5 + i) * (1 + 0.8 * np.sin(2 * np.pi * t / 52))).astype(float)
        ds = pd.date_range(start, periods=length, freq="W-MON")
        frames.append(pd.DataFrame({"unique_id": f"S{i:02d}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def _zoo(name, **kw):
    return ModelZoo(methods=[name], params={name: PARAMS[name]}, **kw)


def test_registered_opt_in_and_torch_not_imported_by_the_registry():
    reg = method_registry()
    for name in ("LSTM", "NHITS", "NBEATS"):
        spec = reg[name]
        assert spec.family == "deep" and not spec.in_default
        assert {"max_steps", "input_size", "scaler_type", "random_seed"} <= set(spec.params)
        caps = spec.capabilities
        assert caps.scope == "global" and caps.carries_state and caps.native_intervals
        assert caps.refit == "every_k" and caps.refit_every > 1
        assert name not in default_methods()
    # Importing the registry (and building an unfitted member) must not import torch.
    code = (
        "import sys; from training.forecasting.methods import method_registry; "
        "method_registry()['NHITS'].member(); print('torch' in sys.modules, 'neuralforecast' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert {"stack_types", "n_blocks", "mlp_width", "n_harmonics", "n_basis"} <= set(reg["NBEATS"].params)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["NHITS", "LSTM", "NBEATS"])
def test_contract_dates_bounds_and_short_series(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # Lightning must write nothing here (nor anywhere in the repository)
    panel = _panel(short={3})  # one series shorter than input_size (52): padded, not dropped
    fc = _zoo(name).forecast(panel, h=8)
    assert list(fc.columns) == ["unique_id", "ds", "method", "yhat", "lo80", "hi80", "lo95", "hi95"]
    assert len(fc) == 12 * 8 and (fc["method"] == name).all()
    last = panel.groupby("unique_id")["ds"].max()
    assert (fc["ds"].to_numpy() == future_ds(last.to_numpy(), 8, "W-MON")).all()
    assert fc[["yhat", "lo80", "hi80", "lo95", "hi95"]].notna().all().all()
    assert (fc["lo95"] <= fc["lo80"]).all() and (fc["lo80"] <= fc["yhat"]).all()
    assert (fc["yhat"] <= fc["hi80"]).all() and (fc["hi80"] <= fc["hi95"]).all()
    assert (fc["hi95"] > fc["lo95"]).any()  # real intervals, not collapsed onto the point forecast
    # Scale follows the series (per-window scaling): the largest series gets the largest forecasts.
    means = fc.groupby("unique_id")["yhat"].mean()
    assert means["S11"] > 3 * means["S01"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["NHITS", "NBEATS"])
def test_seeded_fits_repeat_and_another_seed_differs(name):
    panel = _panel()
    a = _zoo(name).forecast(panel, h=8)
    b = _zoo(name).forecast(panel, h=8)
    c = ModelZoo(methods=[name], params={name: {**PARAMS[name], "random_seed": 7}}).forecast(panel, h=8)
    np.testing.assert_array_equal(a["yhat"].to_numpy(), b["yhat"].to_numpy())
    assert not np.allclose(a["yhat"].to_numpy(), c["yhat"].to_numpy())


@pytest.mark.slow
@pytest.mark.parametrize("name", ["NHITS", "LSTM", "NBEATS"])
def test_state_round_trip_through_the_zoo(name, tmp_path):
    panel = _panel()
    zoo = _zoo(name, horizon=8).fit(panel)
    before = zoo.predict(8)
    entries = zoo.save(tmp_path)
    folder = tmp_path / name
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.pt"]
    config = json.loads((folder / "config.json").read_text())
    assert config["params"]["horizon"] == 8 and "torch" in config["libraries"]
    import torch

    weights = torch.load(folder / "weights.pt", weights_only=True)  # plain tensors, no pickled objects
    assert all(isinstance(v, torch.Tensor) for v in weights.values())

    loaded = ModelZoo.load(tmp_path, json.loads(json.dumps(entries)))
    after = loaded.predict(8, panel=panel)
    pd.testing.assert_frame_equal(before, after)
    # A new history (four more weeks) is forecast from its own end with the carried network.
    longer = _panel(n=84)
    moved = loaded.predict(8, panel=longer)
    assert (moved["ds"].min() - before["ds"].min()) == pd.Timedelta(weeks=4)
    assert not np.allclose(moved["yhat"].to_numpy(), before["yhat"].to_numpy())
    with pytest.raises(ValueError, match="trained for h <= 8"):
        loaded.predict(9, panel=panel)


@pytest.mark.slow
def test_cross_validation_through_the_zoo_on_an_integer_index():
    panel = _panel()
    panel["ds"] = panel.groupby("unique_id").cumcount() + 1  # M4-style integer index, freq=1
    zoo = ModelZoo(methods=["NHITS"], freq=1, params={"NHITS": {**FAST_NHITS, "refit_every": 2}})
    fits = []
    member_cls = type(zoo.member("NHITS"))
    original = member_cls.fit

    def counting_fit(self, data):
        fits.append(len(data))
        return original(self, data)

    member_cls.fit = counting_fit
    try:
        cv = zoo.cross_validation(panel, h=6, n_windows=3, step_size=6, intervals=True)
    finally:
        member_cls.fit = original
    assert fits == [12 * (80 - 18), 12 * (80 - 6)]  # refit every 2 origins: at origins 0 and 2
    assert len(cv) == 12 * 6 * 3
    assert sorted(cv["cutoff"].unique()) == [62, 68, 74]
    assert (cv["ds"] > cv["cutoff"]).all() and (cv["ds"] <= cv["cutoff"] + 6).all()
    truth = panel.set_index(["unique_id", "ds"])["y"]
    np.testing.assert_array_equal(
        cv["y"].to_numpy(), truth.loc[list(zip(cv["unique_id"], cv["ds"], strict=True))].to_numpy()
    )
    assert cv[["yhat", "lo80", "hi95"]].notna().all().all()


def test_predict_before_fit_and_an_unknown_kind_are_clear_errors():
    member = ModelZoo(methods=["NHITS"]).member("NHITS", horizon=4)
    with pytest.raises(RuntimeError, match="before fit"):
        member.predict(4, panel=_panel())
    with pytest.raises(ValueError, match="kind"):
        type(member)(kind="GRU")


def test_no_lightning_logs_left_in_the_repository():
    root = Path(__file__).resolve().parents[3]
    assert not (root / "lightning_logs").exists()


def test_log1p_transform_learns_on_the_log_scale_and_forecasts_in_units():
    panel = _panel()
    params = {**FAST_NHITS, "loss": "mae"}
    plain = ModelZoo(methods=["NHITS"], params={"NHITS": params}).forecast(panel, h=6, intervals=False)
    logged = ModelZoo(methods=["NHITS"], params={"NHITS": {**params, "transform": "log1p"}}).forecast(
        panel, h=6, intervals=False
    )
    assert len(logged) == len(plain) and np.isfinite(logged["yhat"]).all() and (logged["yhat"] >= 0).all()
    assert not np.allclose(logged["yhat"], plain["yhat"])  # the network saw other values
    # Forecasts come back in units (not logs): each series' level is kept to within a factor of 3.
    level = panel.groupby("unique_id")["y"].mean()
    mean_fc = logged.groupby("unique_id")["yhat"].mean()
    big = level[level > 3].index
    assert ((mean_fc[big] > level[big] / 3) & (mean_fc[big] < level[big] * 3)).all()
    with pytest.raises(ValueError, match="transform"):
        ModelZoo(methods=["NHITS"], params={"NHITS": {"transform": "box-cox"}}).member("NHITS")


def test_a_series_too_short_to_validate_on_keeps_early_stopping_for_the_others():
    """One series of 10 weeks (under the 13-week validation window) must neither switch early stopping
    off for the catalogue nor fail the fit (neuralforecast's callback then waited for a validation loss
    that was never logged); the short series is still forecast."""
    panel = _panel(n_ids=6, n=80)
    short = pd.DataFrame({"unique_id": "TINY", "ds": pd.date_range("2024-04-01", periods=10, freq="W-MON"), "y": 1.0})
    panel = pd.concat([panel, short], ignore_index=True)
    zoo = _zoo("NHITS", horizon=13).fit(panel)
    member = zoo.fitted_["NHITS"]
    assert member.model_.early_stop_patience_steps == PARAMS["NHITS"].get("early_stop_patience_steps", 5)
    fc = zoo.predict(13)
    assert set(fc["unique_id"]) == set(panel["unique_id"]) and fc["yhat"].notna().all()


@pytest.mark.slow
def test_nbeats_stacks_are_parameters_and_survive_a_save(tmp_path):
    """A generic-only N-BEATS (two identity stacks, point loss) is another network than the default
    interpretable one, and its saved config (JSON: the stacks come back as a list) rebuilds it."""
    panel = _panel(n_ids=6)
    params = {**FAST_NBEATS, "stack_types": ["identity", "identity"], "n_blocks": 2, "loss": "mase"}
    zoo = ModelZoo(methods=["NBEATS"], horizon=6, params={"NBEATS": params}).fit(panel)
    member = zoo.fitted_["NBEATS"]
    assert member.stack_types == ("identity", "identity") and not member.capabilities.native_intervals
    assert len(member.model_.blocks) == 4  # 2 stacks x 2 blocks
    before = zoo.predict(6)
    loaded = ModelZoo.load(tmp_path, json.loads(json.dumps(zoo.save(tmp_path))))
    assert loaded.fitted_["NBEATS"].stack_types == ("identity", "identity")
    pd.testing.assert_frame_equal(before, loaded.predict(6, panel=panel))


def test_nbeats_rejects_an_unknown_stack_and_an_unknown_loss():
    with pytest.raises(ValueError, match="stack_types"):
        ModelZoo(methods=["NBEATS"], params={"NBEATS": {"stack_types": ["wavelet"]}}).member("NBEATS")
    with pytest.raises(ValueError, match="loss"):
        ModelZoo(methods=["NBEATS"], params={"NBEATS": {"loss": "huber"}}).member("NBEATS")
