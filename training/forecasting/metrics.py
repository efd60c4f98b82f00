"""Forecast accuracy exactly as the M4 competition defines it, plus the intermittent-demand set.

- sMAPE = 200/h · Σ |y − f| / (|y| + |f|)   (a term with y = f = 0 counts as 0)
- MASE  = mean |y − f| / scale, scale = mean |y_t − y_{t−m}| over the training sample
          (M4 used m = 1 for weekly data). One convention everywhere (backtests, the router,
          the promotion guardrail, live monitoring): a scale is *undefined* (NaN) when the
          sample has no m-step naive error to measure (m or fewer points) or when that error
          is zero (a constant sample); such a series has no MASE and is left out of MASE means.
- OWA   = ½ (sMAPE / sMAPE_Naive2 + MASE / MASE_Naive2), each averaged over all series first
- MAE, RMSE, bias (mean f − y), pinball loss at a quantile, and the scaled pinball loss
  (pinball / MASE scale) that compares across products of different volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def smape(y: np.ndarray, f: np.ndarray) -> float:
    y, f = np.asarray(y, float), np.asarray(f, float)
    denom = np.abs(y) + np.abs(f)
    terms = np.divide(np.abs(y - f), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(200.0 * terms.mean())


def defined_scales(scales: pd.Series) -> pd.Series:
    """The one convention for an undefined MASE scale: anything not positive and finite becomes NaN."""
    values = pd.to_numeric(scales, errors="coerce").astype(float)
    return values.where(np.isfinite(values) & (values > 0))


def mase_scale(insample: np.ndarray, m: int = 1) -> float:
    """Mean absolute m-step naive error of the training sample; NaN when undefined (see module doc)."""
    insample = np.asarray(insample, float)
    if len(insample) <= m:
        return float("nan")
    # numpy only: the service computes this for every served forecast (pandas cost ~0.5 ms a call there)
    scale = float(np.mean(np.abs(insample[m:] - insample[:-m])))
    return scale if np.isfinite(scale) and scale > 0 else float("nan")


def mase(y: np.ndarray, f: np.ndarray, insample: np.ndarray, m: int = 1) -> float:
    """MAE / :func:`mase_scale`; NaN when the scale is undefined."""
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(f, float))) / mase_scale(insample, m))


def mae(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, float) - np.asarray(f, float))))


def rmse(y: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, float) - np.asarray(f, float)) ** 2)))


def bias(y: np.ndarray, f: np.ndarray) -> float:
    """Mean forecast minus actual: positive means over-forecasting (excess stock)."""
    return float(np.mean(np.asarray(f, float) - np.asarray(y, float)))


def pinball(y: np.ndarray, q_forecast: np.ndarray, q: float) -> float:
    diff = np.asarray(y, float) - np.asarray(q_forecast, float)
    return float(np.mean(np.maximum(q * diff, (q - 1) * diff)))


def owa(smape_value: float, mase_value: float, smape_naive2: float, mase_naive2: float) -> float:
    return 0.5 * (smape_value / smape_naive2 + mase_value / mase_naive2)


def insample_scales(train: pd.DataFrame, m: int = 1) -> pd.Series:
    """MASE scale per series of a long frame (unique_id, ds, y); NaN where undefined (as :func:`mase_scale`)."""
    d = train.sort_values(["unique_id", "ds"])
    diff = d.groupby("unique_id")["y"].diff(m).abs()
    return defined_scales(diff.groupby(d["unique_id"]).mean())


def mean_mase(scored: pd.DataFrame, history: pd.DataFrame) -> float:
    """Mean over series of MAE / lag-1 in-sample scale of ``history`` (series with an undefined scale left out).

    ``scored`` holds unique_id, y (actual) and yhat; NaN if no series can be scaled. The
    promotion guardrail and live monitoring score with this, the backtest with
    :func:`pointwise_errors` + :func:`summarise`: the same scale, the same figure.
    """
    mae = (scored["y"] - scored["yhat"]).abs().groupby(scored["unique_id"]).mean()
    scale = insample_scales(history).reindex(mae.index)
    valid = scale.notna()
    return float((mae[valid] / scale[valid]).mean()) if valid.any() else float("nan")


def pointwise_errors(
    forecasts: pd.DataFrame, scales: pd.Series | pd.DataFrame, by: list[str] | None = None
) -> pd.DataFrame:
    """Per-(series[, cutoff], method) error metrics from a long frame with y, yhat and bounds.

    ``scales`` is the MASE scale per unique_id (Series), or per (unique_id, cutoff) as a
    frame with a ``scale`` column when each backtest window has its own training sample.
    """
    by = by or [c for c in ("unique_id", "cutoff", "method") if c in forecasts.columns]
    f = forecasts.copy()
    if isinstance(scales, pd.Series):
        f["scale"] = f["unique_id"].map(scales)
    else:
        f = f.merge(scales, on=[c for c in scales.columns if c != "scale"], how="left")
    f["scale"] = defined_scales(f["scale"])
    err = f["y"] - f["yhat"]
    denom = f["y"].abs() + f["yhat"].abs()
    f["_smape"] = np.where(denom > 0, 200 * err.abs() / denom.where(denom > 0, 1), 0.0)
    f["_abs"] = err.abs()
    f["_sq"] = err**2
    f["_bias"] = -err
    for q, col in ((0.1, "lo80"), (0.9, "hi80"), (0.025, "lo95"), (0.975, "hi95")):
        if col in f:
            d = f["y"] - f[col]
            f[f"_pb{col}"] = np.maximum(q * d, (q - 1) * d)
    g = f.groupby(by, sort=False)
    out = pd.DataFrame(
        {
            "smape": g["_smape"].mean(),
            "mae": g["_abs"].mean(),
            "rmse": np.sqrt(g["_sq"].mean()),
            "bias": g["_bias"].mean(),
            "scale": g["scale"].first(),
        }
    )
    out["mase"] = np.where(out["scale"] > 0, out["mae"] / out["scale"].where(out["scale"] > 0, 1), np.nan)
    pb_cols = [c for c in f.columns if c.startswith("_pb")]
    if pb_cols:
        # Mean pinball over the four interval quantiles, scaled like MASE (NaN without bounds).
        pb = g[pb_cols].mean().mean(axis=1, skipna=False)
        out["scaled_pinball"] = np.where(out["scale"] > 0, pb / out["scale"].where(out["scale"] > 0, 1), np.nan)
    return out.reset_index()


def summarise(errors: pd.DataFrame, baseline: str = "Naive2") -> pd.DataFrame:
    """Mean metrics per method over all series (and windows), with OWA against ``baseline``.

    Series whose MASE is undefined (a constant training sample) are left out of every
    method's MASE mean alike, so the methods stay comparable.
    """
    valid = errors.dropna(subset=["mase"])
    cols = [c for c in ("smape", "mase", "mae", "rmse", "bias", "scaled_pinball") if c in errors]
    table = errors.groupby("method")[[c for c in cols if c != "mase"]].mean()
    table["mase"] = valid.groupby("method")["mase"].mean()
    table["n"] = errors.groupby("method").size()
    if baseline in table.index:
        base = table.loc[baseline]
        table["owa"] = 0.5 * (table["smape"] / base["smape"] + table["mase"] / base["mase"])
    else:
        table["owa"] = np.nan
    return table[["smape", "mase", "owa", *[c for c in cols if c not in ("smape", "mase")], "n"]].sort_values("owa")
