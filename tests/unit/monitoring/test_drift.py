"""The drift check: year-over-year features (a repeated season is not drift), Evidently's per-feature tests
and the dataset verdict, residual drift, and the shift injector the rates are measured with."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import FEATURES, data_drift, drift_features, numeric_method, residual_drift
from training.data.demo_shift import inject_shift

WEEKS = pd.date_range("2024-01-01", periods=130, freq="W-MON")


def _frame(series: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"unique_id": k, "ds": WEEKS[: len(v)], "y": v}) for k, v in series.items()], ignore_index=True
    )


def test_a_season_that_repeats_is_not_drift_and_a_level_change_is():
    # Bug caught: features of the raw window, which move with every season (the false alarms of spring).
    season = 20 + 15 * np.sin(2 * np.pi * np.arange(130) / 52)
    raised = season.copy()
    raised[-13:] *= 1.3
    features = drift_features(_frame({"same": season, "raised": raised}), window_weeks=13)
    assert list(features.columns) == list(FEATURES)
    assert features.loc["same"].abs().max() == pytest.approx(0.0, abs=1e-9)
    assert features.loc["raised", "level_yoy"] > 3  # +30 % over 13 weeks of a noiseless series
    assert features.loc["raised", "zero_share_yoy"] == 0


def test_products_without_a_season_before_the_window_are_left_out():
    launched = pd.DataFrame({"unique_id": "new", "ds": WEEKS[90:], "y": 1.0})  # 40 weeks of history
    features = drift_features(pd.concat([_frame({"old": np.ones(130)}), launched]), window_weeks=13)
    assert list(features.index) == ["old"]


def test_a_product_that_went_quiet_is_lifecycle_not_drift():
    # Bug caught: discontinued products in the rows, whose share grows with every window of an ageing
    # catalogue and shifts the level column of a recent window against an older one.
    steady = np.full(130, 10.0)
    retired, back = steady.copy(), steady.copy()
    retired[-13:] = 0.0
    back[-65:-52] = 0.0
    features = drift_features(_frame({"steady": steady, "retired": retired, "back": back}), window_weeks=13)
    assert list(features.index) == ["steady"]
    assert features.attrs["lifecycle"] == {"went_quiet": ["retired"], "started_selling": ["back"]}
    result = data_drift(features.iloc[[0, 0]], features.iloc[[0, 0]])
    assert result.lifecycle == {"went_quiet": 1, "started_selling": 1}


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="window_weeks"):
        drift_features(_frame({"a": np.ones(130)}), window_weeks=1)
    with pytest.raises(ValueError, match="lacks columns"):
        drift_features(pd.DataFrame({"unique_id": ["a"], "ds": [WEEKS[0]]}))
    with pytest.raises(ValueError, match="drift_share"):
        data_drift(pd.DataFrame({"a": [0.0, 1.0]}), pd.DataFrame({"a": [0.0, 1.0]}), drift_share=0)


def _rows(n: int, seed: int, shift: float = 0.0, share: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=list(FEATURES))
    frame.loc[: int(share * n) - 1, "level_yoy"] += shift
    return frame


def test_the_verdict_is_the_share_of_drifted_features():
    shifted = data_drift(_rows(400, 1), _rows(400, 2, shift=3.0, share=0.2), drift_share=0.2)
    assert shifted.drifted and shifted.drifted_columns == ["level_yoy"] and shifted.share == 0.2
    detail = shifted.columns["level_yoy"]
    assert detail["drifted"] and detail["p_value"] < detail["threshold"]
    assert shifted.n_reference == shifted.n_current == 400 and shifted.snapshot is not None
    assert "snapshot" not in shifted.to_dict()
    # the same shift does not make a drifted catalogue when half the features must move
    assert not data_drift(_rows(400, 1), _rows(400, 2, shift=3.0, share=0.2), drift_share=0.5).drifted
    calm = data_drift(_rows(400, 1), _rows(400, 3))
    assert not calm.drifted and calm.drifted_columns == []


def test_the_test_is_chosen_by_sample_size():
    assert numeric_method(300) == "stockml_welch_t_d0.1" and numeric_method(12) == "mannw"
    small = data_drift(_rows(12, 1), _rows(12, 2))
    assert set(small.columns) == set(FEATURES)


def test_a_significant_but_tiny_move_is_not_drift_and_evidently_counts_alike():
    # Bug caught: p-values alone over thousands of products, which flag the small differences any two
    # quarters of a catalogue have (false alarms growing with the catalogue's size).
    rng = np.random.default_rng(0)
    reference = pd.DataFrame({"level_yoy": rng.normal(0, 1, 20_000)})
    nudged = pd.DataFrame({"level_yoy": rng.normal(0.05, 1, 20_000)})
    result = data_drift(reference, nudged, drift_share=1.0)
    detail = result.columns["level_yoy"]
    assert detail["p_value"] < 0.01 and detail["effect"] < 0.1 and not result.drifted
    assert data_drift(reference, nudged, drift_share=1.0, min_effect=0.0).drifted
    moved = data_drift(reference, pd.DataFrame({"level_yoy": rng.normal(0.2, 1, 20_000)}), drift_share=1.0)
    assert moved.drifted and moved.columns["level_yoy"]["effect"] >= 0.1
    # Evidently's own drifted-columns count (what the ops dashboard plots) applies the same rule
    counts = [m for m in result.snapshot.dict()["metrics"] if "DriftedColumnsCount" in str(m["config"]["type"])]
    assert counts and counts[0]["value"]["count"] == 0
    counts = [m for m in moved.snapshot.dict()["metrics"] if "DriftedColumnsCount" in str(m["config"]["type"])]
    assert counts[0]["value"]["count"] == 1


def test_residual_drift_pools_the_scaled_errors():
    rng = np.random.default_rng(0)
    before, biased = pd.Series(rng.normal(0, 1, 500)), pd.Series(rng.normal(0.8, 1, 200))
    assert residual_drift(before, biased).drifted
    assert not residual_drift(before, pd.Series(rng.normal(0, 1, 200))).drifted


def test_the_injector_shifts_exactly_the_share_and_the_weeks_it_names():
    demand = _frame({f"p{i}": np.full(130, 10.0) for i in range(10)})
    start = WEEKS[100]
    shifted, chosen = inject_shift(demand, start, "level", 0.3, 0.2, seed=4)
    assert len(chosen) == 2
    changed = shifted["y"] != demand["y"]
    assert set(shifted.loc[changed, "unique_id"]) == set(chosen)
    assert (shifted.loc[changed, "ds"] >= start).all() and (shifted.loc[changed, "y"] == 13.0).all()
    assert changed.sum() == 2 * 30
    again, same = inject_shift(demand, start, "level", 0.3, 0.2, seed=4)
    assert same == chosen and again.equals(shifted)
    with pytest.raises(ValueError, match="kind"):
        inject_shift(demand, start, "trend", 0.3, 0.2)


@pytest.mark.parametrize("seed", [1000, 1001, 1002])
def test_on_the_seeded_demo_a_shift_in_half_the_catalogue_is_seen_and_no_shift_is_not(seed):
    # The end-to-end check bench.drift measures rates of, on three of its seeded runs (300 products):
    # the unshifted catalogue (a new season in the window) is not drift; +30 % and a doubling of the
    # level in half the products, from the week after the reference end, are. Bug caught: a feature or
    # test change that keeps the unit cases green and loses what the benchmark reports.
    from bench.drift import catalogue, judge

    demand = catalogue(300, seed)
    start = demand["ds"].max() - pd.Timedelta(weeks=12)
    assert not judge(demand, 13, 0.2, 0.01)[0]
    for size in (0.3, 1.0):
        shifted, chosen = inject_shift(demand, start, "level", size, 0.5, seed=seed - 1000)
        assert len(chosen) == 150 and judge(shifted, 13, 0.2, 0.01)[0], size


def test_results_doc_table_is_the_json_it_quotes():
    # Bug caught: a detection rate typed by hand, or a table left from an earlier run.
    import json
    from pathlib import Path

    from bench.drift import markdown_table

    root = Path(__file__).resolve().parents[3]
    results = (root / "bench" / "RESULTS.md").read_text()
    for name in ("drift.json", "drift_1000.json", "drift_3000.json"):  # the catalogue sizes RESULTS.md quotes
        report = json.loads((root / "bench" / "results" / name).read_text())
        assert report["command"] in results and markdown_table(report) in results, name
        assert set(report) >= {"false_alarm_rate", "detection", "seconds"}
        assert all("effect_size" in d for d in report["detection"])
