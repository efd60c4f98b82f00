"""Router evaluation: classical rule, significance tests (checked by hand) and the HTML report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from training.evaluation.compare import (
    CLASSICAL_RULE,
    Evaluation,
    classical_rule_forecasts,
    diebold_mariano,
    evaluate,
    pointwise_scaled_errors,
    significance,
)
from training.forecasting.metrics import pointwise_errors

N_SKUS, H = 60, 13
CUTOFFS = pd.to_datetime(["2024-01-07", "2024-04-07"])
PATTERNS = ("smooth", "erratic", "intermittent", "lumpy")


def _synthetic(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """60 SKUs × 2 cutoffs × 13 steps; router ≫ Naive2, router ≡ AutoETS, Croston in between."""
    rng = np.random.default_rng(seed)
    skus = [f"SKU{i:03d}" for i in range(N_SKUS)]
    rows = []
    scales = []
    for sku in skus:
        for cutoff in CUTOFFS:
            ds = cutoff + pd.to_timedelta(7 * np.arange(1, H + 1), unit="D")
            y = rng.poisson(20, H).astype(float)
            scales.append({"unique_id": sku, "cutoff": cutoff, "scale": rng.uniform(1.0, 3.0)})
            router = y + rng.normal(0, 1.0, H)
            yhat = {
                "router": router,
                "AutoETS": router.copy(),
                "Naive2": y + rng.normal(0, 4.0, H),
                "CrostonClassic": y + rng.normal(0, 2.0, H),
            }
            for method, f in yhat.items():
                frame = {"unique_id": sku, "ds": ds, "cutoff": cutoff, "y": y, "method": method, "yhat": f}
                rows.append(pd.DataFrame(frame))
    forecasts = pd.concat(rows, ignore_index=True)
    errors = pointwise_errors(forecasts, pd.DataFrame(scales))
    classes = pd.DataFrame({"pattern": [PATTERNS[i % 4] for i in range(N_SKUS)]}, index=pd.Index(skus, name="sku"))
    products = pd.DataFrame(
        {
            "sku": skus,
            "name": [f"Product {s}" for s in skus],
            "category": [("Tools", "Garden", "Kitchen")[i % 3] for i in range(N_SKUS)],
            "unit_cost": 5.0,
            "unit_price": 9.0,
            "lead_time_weeks": 2,
        }
    )
    return forecasts, errors, classes, products


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return _synthetic()


@pytest.fixture(scope="module")
def evaluation(data) -> Evaluation:
    forecasts, errors, classes, products = data
    return evaluate(forecasts, errors, classes, products, reference="router")


# --- Diebold–Mariano against the formula written out -------------------------------------------


def _dm_by_hand(d: list[float], h: int) -> tuple[float, float, bool]:
    """DM (1995) with HLN (1997); rectangular long-run variance, Bartlett weights 1 − k/h if that is ≤ 0.

    Returns (statistic, two-sided p-value, whether the Bartlett fallback was needed).
    """
    t_len = len(d)
    mean = sum(d) / t_len
    gammas = []
    for k in range(h):
        gammas.append(sum((d[t] - mean) * (d[t - k] - mean) for t in range(k, t_len)) / t_len)
    var = (gammas[0] + 2 * sum(gammas[1:])) / t_len
    bartlett = var <= 0
    if bartlett:
        var = (gammas[0] + 2 * sum((1 - k / h) * gammas[k] for k in range(1, h))) / t_len
    dm = mean / var**0.5
    correction = ((t_len + 1 - 2 * h + h * (h - 1) / t_len) / t_len) ** 0.5
    stat = dm * correction
    return stat, 2 * (1 - stats.t.cdf(abs(stat), t_len - 1)), bartlett


D = [0.5, -0.2, 0.3, 0.8, 0.1, 0.4, -0.1, 0.6]


@pytest.mark.parametrize("h", [1, 2])
def test_diebold_mariano_matches_formula(h):
    stat, p = diebold_mariano(np.array(D), h)
    exp_stat, exp_p, bartlett = _dm_by_hand(D, h)
    assert not bartlett
    assert stat == pytest.approx(exp_stat, rel=1e-12)
    assert p == pytest.approx(exp_p, rel=1e-9)


def test_diebold_mariano_falls_back_to_bartlett_when_the_variance_is_negative():
    # h = 3 on D: γ0 + 2(γ1 + γ2) < 0 with the rectangular window, so Newey–West weights are used.
    mean = sum(D) / len(D)
    c = np.array(D) - mean
    gammas = [c[k:] @ c[: len(D) - k] / len(D) for k in range(3)]
    assert gammas[0] + 2 * (gammas[1] + gammas[2]) < 0
    stat, p = diebold_mariano(np.array(D), 3)
    exp_stat, exp_p, bartlett = _dm_by_hand(D, 3)
    assert bartlett
    assert stat == pytest.approx(exp_stat, rel=1e-12)
    assert p == pytest.approx(exp_p, rel=1e-9)


def test_diebold_mariano_h1_is_a_corrected_t_test():
    d = np.array([0.5, -0.2, 0.3, 0.8, 0.1])
    # h = 1: DM = mean / sqrt(var_biased / T), HLN factor sqrt((T - 1) / T) → the ordinary one-sample t.
    expected = stats.ttest_1samp(d, 0.0)
    stat, p = diebold_mariano(d, 1)
    assert stat == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue)


def test_diebold_mariano_degenerate_cases():
    assert diebold_mariano(np.zeros(10), 3) == (0.0, 1.0)
    stat, p = diebold_mariano(np.full(10, 0.2), 3)
    assert stat == np.inf and p == 0.0
    assert all(np.isnan(diebold_mariano(np.array([1.0]), 1)))
    # A long-run variance the rectangular window makes negative falls back to Bartlett weights.
    d = np.array([1.0, -1.0] * 5) + 0.3
    stat, p = diebold_mariano(d, 2)
    assert np.isfinite(stat) and 0 <= p <= 1


def test_dm_in_significance_uses_cross_sectional_mean_scaled_loss():
    """Two SKUs, one window of 3 steps: d_t = mean over SKUs of (|e_m| − |e_ref|) / scale."""
    ds = pd.date_range("2024-01-07", periods=3, freq="W")
    cutoff = pd.Timestamp("2023-12-31")
    y = {"a": [10.0, 12.0, 8.0], "b": [3.0, 0.0, 5.0]}
    f = {
        ("a", "router"): [11.0, 12.0, 9.0],
        ("a", "other"): [13.0, 9.0, 8.0],
        ("b", "router"): [3.0, 1.0, 5.0],
        ("b", "other"): [5.0, 2.0, 2.0],
    }
    scale = {"a": 2.0, "b": 0.5}
    # Steps in reverse order in the frame: the step must come from ds, not row order.
    forecasts = pd.concat(
        [
            pd.DataFrame({"unique_id": u, "ds": ds, "cutoff": cutoff, "y": y[u], "method": m, "yhat": v}).iloc[::-1]
            for (u, m), v in f.items()
        ],
        ignore_index=True,
    )
    scales = pd.DataFrame({"unique_id": list(scale), "cutoff": cutoff, "scale": list(scale.values())})
    errors = pointwise_errors(forecasts, scales)
    pw = pointwise_scaled_errors(forecasts, errors)
    assert set(pw["step"]) == {1, 2, 3}
    assert pw.set_index(["unique_id", "method", "step"]).loc[("a", "other", 1), "loss"] == pytest.approx(3 / 2)
    d = []
    for t in range(3):
        per_sku = [
            (abs(y[u][t] - f[(u, "other")][t]) - abs(y[u][t] - f[(u, "router")][t])) / scale[u] for u in ("a", "b")
        ]
        d.append(sum(per_sku) / 2)
    assert d == pytest.approx([(1.0 + 4.0) / 2, (1.5 + 2.0) / 2, (-0.5 + 6.0) / 2])
    table = significance(errors, "router", pointwise=pw).set_index("method")
    exp_stat, exp_p, _ = _dm_by_hand(d, 2)  # dm_h defaults to the horizon, capped at T − 1 = 2
    assert table.loc["other", "dm_stat"] == pytest.approx(exp_stat)
    assert table.loc["other", "dm_p"] == pytest.approx(exp_p)
    assert table.loc["other", "dm_T"] == 3
    stat1, _, _ = _dm_by_hand(d, 1)
    assert significance(errors, "router", pointwise=pw, dm_h=1).loc[0, "dm_stat"] == pytest.approx(stat1)


# --- significance on the synthetic backtest -----------------------------------------------------


def test_router_clearly_better_than_naive2(evaluation):
    row = evaluation.significance.set_index("method").loc["Naive2"]
    assert row["reference"] == "router"
    assert row["diff"] > 0
    assert row["diff"] == pytest.approx(row["mean_method"] - row["mean_reference"])
    assert row["wilcoxon_p"] < 0.01
    assert row["dm_stat"] > 0 and row["dm_p"] < 0.05
    assert row["dm_T"] == len(CUTOFFS) * H
    assert row["n_skus"] == N_SKUS
    assert row["better"] == "reference"


def test_router_identical_to_autoets_is_no_difference(evaluation):
    row = evaluation.significance.set_index("method").loc["AutoETS"]
    assert row["diff"] == pytest.approx(0.0)
    assert row["wilcoxon_p"] == pytest.approx(1.0)
    assert row["dm_p"] == pytest.approx(1.0)
    assert row["better"] == "no significant difference"


def test_method_better_than_reference_is_reported(data):
    _, errors, _, _ = data
    table = significance(errors, "Naive2").set_index("method")  # no pointwise: DM columns NaN
    assert table.loc["router", "better"] == "method"
    assert table.loc["router", "diff"] < 0
    assert np.isnan(table.loc["router", "dm_p"])
    with pytest.raises(ValueError, match="reference"):
        significance(errors, "Theta")


def test_wilcoxon_matches_scipy(data):
    _, errors, _, _ = data
    per_sku = errors.groupby(["unique_id", "method"])["mase"].mean().unstack()
    expected = stats.wilcoxon(per_sku["CrostonClassic"] - per_sku["router"], zero_method="zsplit").pvalue
    table = significance(errors, "router").set_index("method")
    assert table.loc["CrostonClassic", "wilcoxon_p"] == pytest.approx(expected)


# --- metric tables and win rate -----------------------------------------------------------------


def test_tables(evaluation, data):
    _, errors, _, _ = data
    overall = evaluation.overall.set_index("method")
    assert set(overall.index) == {"router", "AutoETS", "Naive2", "CrostonClassic"}
    assert {"mae", "rmse", "smape", "mase", "owa", "n_skus"} <= set(overall.columns)
    assert (overall["n_skus"] == N_SKUS).all()
    assert overall.loc["Naive2", "owa"] == pytest.approx(1.0)
    assert overall.loc["router", "mase"] == pytest.approx(errors.loc[errors["method"] == "router", "mase"].mean())
    assert overall.loc["router", "mase"] < overall.loc["CrostonClassic", "mase"] < overall.loc["Naive2", "mase"]

    bp = evaluation.by_pattern
    assert set(bp["pattern"]) == set(PATTERNS)
    assert len(bp) == 4 * 4
    assert (bp["n_skus"] == N_SKUS // 4).all()
    assert np.allclose(bp.loc[bp["method"] == "Naive2", "owa"], 1.0)

    bc = evaluation.by_category
    assert set(bc["category"]) == {"Tools", "Garden", "Kitchen"}
    assert (bc["n_skus"] == N_SKUS // 3).all()

    wr = evaluation.win_rate.set_index("method")
    assert wr.loc["AutoETS", "win_rate"] == 1.0 and wr.loc["AutoETS", "tie_rate"] == 1.0
    assert wr.loc["Naive2", "win_rate"] > 0.9

    frames = evaluation.to_frames()
    assert set(frames) == {"overall", "by_pattern", "by_category", "significance", "win_rate"}


def test_without_products_or_naive2(data):
    forecasts, errors, classes, _ = data
    keep = errors["method"] != "Naive2"
    ev = evaluate(forecasts[forecasts["method"] != "Naive2"], errors[keep], classes, None)
    assert ev.by_category.empty
    assert "by_category" not in ev.to_frames()
    assert ev.overall["owa"].isna().all()
    with pytest.raises(ValueError, match="router"):
        evaluate(forecasts, errors[errors["method"] != "router"], classes, None)


# --- classical rule -----------------------------------------------------------------------------


def test_classical_rule_picks_croston_for_intermittent_and_ets_otherwise(data):
    forecasts, _, classes, _ = data
    rule = classical_rule_forecasts(forecasts, classes["pattern"])
    assert (rule["method"] == CLASSICAL_RULE).all()
    assert len(rule) == N_SKUS * len(CUTOFFS) * H
    assert rule.attrs["sources"] == {"intermittent": "CrostonClassic", "other": "AutoETS"}
    key = ["unique_id", "cutoff", "ds"]
    merged = rule.merge(
        forecasts.pivot_table(index=key, columns="method", values="yhat").reset_index(), on=key, how="left"
    )
    intermittent = merged["unique_id"].map(classes["pattern"]).isin(["intermittent", "lumpy"])
    assert intermittent.sum() == len(rule) // 2
    assert np.array_equal(merged.loc[intermittent, "yhat"], merged.loc[intermittent, "CrostonClassic"])
    assert np.array_equal(merged.loc[~intermittent, "yhat"], merged.loc[~intermittent, "AutoETS"])


def test_classical_rule_fallbacks_and_errors(data):
    forecasts, _, classes, _ = data
    renamed = forecasts.replace({"method": {"CrostonClassic": "CrostonSBA", "AutoETS": "Holt"}})
    rule = classical_rule_forecasts(renamed, classes["pattern"])
    assert rule.attrs["sources"] == {"intermittent": "CrostonSBA", "other": "Holt"}
    with pytest.raises(ValueError, match="no Croston method"):
        classical_rule_forecasts(forecasts[forecasts["method"] != "CrostonClassic"], classes["pattern"])
    with pytest.raises(ValueError, match="exponential-smoothing"):
        classical_rule_forecasts(forecasts[forecasts["method"] != "AutoETS"], classes["pattern"])


def test_classical_rule_in_the_evaluation(data):
    forecasts, errors, classes, products = data
    rule = classical_rule_forecasts(forecasts, classes["pattern"])
    all_fc = pd.concat([forecasts, rule], ignore_index=True)
    scales = errors[["unique_id", "cutoff", "scale"]].drop_duplicates()
    ev = evaluate(all_fc, pointwise_errors(all_fc, scales), classes, products)
    assert CLASSICAL_RULE in set(ev.overall["method"])
    row = ev.significance.set_index("method").loc[CLASSICAL_RULE]
    assert row["diff"] > 0 and row["better"] == "reference"


# --- HTML report --------------------------------------------------------------------------------


def test_to_html_is_self_contained(evaluation, tmp_path):
    out = evaluation.to_html(tmp_path / "report" / "evaluation.html", title="Router vs <single> methods")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "Router vs &lt;single&gt; methods" in text
    assert text.count("* plotly.js v") == 1  # the bundle, embedded once
    start = text.index("* plotly.js v")
    outside_bundle = text[:start] + text[text.index("</script>", start) :]
    assert "src=" not in outside_bundle  # nothing is loaded from the network
    assert text.count("plotly-graph-div") == 4  # MASE, by pattern, by category, p-values
    assert text.count("<script") < 12
    for method in ("router", "Naive2", "AutoETS", "CrostonClassic"):
        assert method in text
    assert "Wilcoxon" in text and "Diebold" in text
    assert text.count("<table") == 5
