"""Forecast quality in service: realised demand against every forecast that was stored or served.

Two kinds of forecast are judged the same way:

- the pipeline's ``stock_forecasts`` rows (one set per training cut-off: the *origin*), and
- the service's served-forecast records (``serving_forecasts``, their points) with the actuals
  callers sent to ``/feedback`` (``serving_feedback``) where there are some, else the source's.

Each forecast row becomes a scored point (:func:`score_points`): error ``y - yhat`` and that
error scaled by the MASE scale of its SKU's history *before its origin*
(:func:`training.forecasting.metrics.insample_scales`, the one shared scale: what the backtest
and the promotion guardrail divide by). :func:`summarise_quality` then gives MAE, MASE (mean
over SKUs of MAE / scale, as :func:`~training.forecasting.metrics.mean_mase`) and bias per
model version, per demand pattern and per realised week, and :func:`degradation` applies the
rule: weekly MASE above ``ratio`` × the champion's backtest MASE for ``weeks`` consecutive weeks.

Plain frames in, plain values out; no files, settings or environment.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import pandas as pd

from training.forecasting.metrics import insample_scales

POINT_COLUMNS = ["source", "model_version", "origin", "unique_id", "ds", "y", "yhat", "scale"]


def stored_points(forecasts: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """``stock_forecasts`` rows joined to the realised demand, each with its origin's MASE scale.

    ``forecasts`` has sku, ds, yhat, model_version and cutoff_week (the origin: the last week of
    data the forecast saw); when several pipelines wrote the same origin, the newest rows win.
    ``demand`` is the weekly demand (unique_id, ds, y). Forecast weeks not observed yet are left out.
    """
    if forecasts.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    fc = forecasts.rename(columns={"sku": "unique_id"}).assign(
        ds=lambda f: pd.to_datetime(f["ds"]), origin=lambda f: pd.to_datetime(f["cutoff_week"])
    )
    if "created_at" in fc:
        fc = fc.sort_values("created_at")
    fc = fc.drop_duplicates(["origin", "unique_id", "ds"], keep="last")
    scored = fc.merge(_demand(demand), on=["unique_id", "ds"], how="inner")
    return _with_scales(scored, demand).assign(source="stored")[POINT_COLUMNS]


def served_points(served: pd.DataFrame, feedback: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """The service's forecast records as scored points: the ``/feedback`` actual where a caller sent
    one, the source's realised demand otherwise.

    ``served`` has the ``serving_forecasts`` columns (forecast_id, sku, model_name, model_version,
    scale, points as JSON ``{"YYYY-MM-DD": yhat}``, created_at); ``feedback`` the ``serving_feedback``
    ones (forecast_id, ds, y). The scale is the one the service recorded with the forecast (the
    same lag-1 in-sample scale of the history it was sent); the origin is the week before the
    first forecast week.
    """
    if served.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    rows = [
        {
            "forecast_id": r.forecast_id,
            "unique_id": str(r.sku),
            "model_version": f"{r.model_name}/v{r.model_version}",
            "scale": float(r.scale),
            "ds": pd.Timestamp(ds),
            "yhat": yhat,
        }
        for r in served.itertuples()
        for ds, yhat in json.loads(r.points).items()
        if yhat is not None
    ]
    if not rows:
        return pd.DataFrame(columns=POINT_COLUMNS)
    points = pd.DataFrame(rows)
    points["origin"] = points.groupby("forecast_id")["ds"].transform("min") - pd.Timedelta(weeks=1)
    actual = _demand(demand).rename(columns={"y": "y_source"})
    points = points.merge(actual, on=["unique_id", "ds"], how="left")
    if not feedback.empty:
        fb = feedback[["forecast_id", "ds", "y"]].assign(ds=lambda f: pd.to_datetime(f["ds"]))
        points = points.merge(fb.rename(columns={"y": "y_feedback"}), on=["forecast_id", "ds"], how="left")
        points["y"] = points["y_feedback"].fillna(points["y_source"])
    else:
        points["y"] = points["y_source"]
    points = points[points["y"].notna() & (points["scale"] > 0)]
    return points.assign(source="served")[POINT_COLUMNS]


def _demand(demand: pd.DataFrame) -> pd.DataFrame:
    d = demand.rename(columns={"sku": "unique_id"})[["unique_id", "ds", "y"]]
    return d.assign(ds=pd.to_datetime(d["ds"]), unique_id=d["unique_id"].astype(str))


def _with_scales(scored: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """``scored`` with the MASE scale of each SKU's history up to its origin (NaN-scale rows dropped)."""
    history = _demand(demand)
    parts = []
    for origin, group in scored.groupby("origin"):
        scales = insample_scales(history[history["ds"] <= origin])
        parts.append(group.assign(scale=group["unique_id"].map(scales)))
    if not parts:
        return scored.assign(scale=np.nan).iloc[0:0]
    out = pd.concat(parts, ignore_index=True)
    return out[out["scale"].notna()]


def score_points(points: Iterable[pd.DataFrame], patterns: pd.Series | None = None) -> pd.DataFrame:
    """All scored points in one frame with ``error`` (y - yhat), ``abs_error`` and ``pattern``."""
    frames = [p for p in points if not p.empty]
    if not frames:
        return pd.DataFrame(columns=[*POINT_COLUMNS, "error", "abs_error", "pattern"])
    p = pd.concat(frames, ignore_index=True)
    p = p.assign(y=p["y"].astype(float), yhat=p["yhat"].astype(float), scale=p["scale"].astype(float))
    p["error"] = p["y"] - p["yhat"]
    p["abs_error"] = p["error"].abs()
    pattern = p["unique_id"].map(patterns) if patterns is not None else None
    p["pattern"] = pattern.fillna("unknown") if pattern is not None else "unknown"
    return p


def group_quality(points: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """MAE, MASE, bias and counts per ``by``.

    MASE is the mean over SKUs of (their MAE in the group / their scale), as the backtest and
    :func:`training.forecasting.metrics.mean_mase` average it; bias is mean(yhat - y), positive
    when the forecasts ran high. A SKU scored from several origins carries each origin's scale.
    """
    cols = [*by, "mae", "mase", "bias", "points", "skus"]
    if points.empty:
        return pd.DataFrame(columns=cols)
    per_sku = (
        points.assign(scaled=points["abs_error"] / points["scale"])
        .groupby([*by, "unique_id"], observed=True)
        .agg(scaled=("scaled", "mean"))
        .reset_index()
    )
    mase = per_sku.groupby(by, observed=True)["scaled"].mean().rename("mase")
    g = points.groupby(by, observed=True)
    out = pd.concat(
        [
            g["abs_error"].mean().rename("mae"),
            mase,
            (-g["error"].mean()).rename("bias"),
            g.size().rename("points"),
            g["unique_id"].nunique().rename("skus"),
        ],
        axis=1,
    ).reset_index()
    return out[cols]


def summarise_quality(points: pd.DataFrame) -> dict[str, list[dict]]:
    """Quality per model version, per (model version, pattern) and per (model version, week)."""
    weekly = group_quality(points, ["model_version", "ds"])
    if not weekly.empty:
        weekly["ds"] = pd.to_datetime(weekly["ds"]).dt.date.astype(str)
    return {
        "by_version": _records(group_quality(points, ["source", "model_version"])),
        "by_pattern": _records(group_quality(points, ["model_version", "pattern"])),
        "by_week": _records(weekly),
    }


def _records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records", double_precision=6))


def degradation(weekly: pd.DataFrame, backtest_mase: float | None, ratio: float, weeks: int) -> dict:
    """The degradation rule on one model's weekly MASE (columns ds, mase).

    Degraded when each of the last ``weeks`` observed weeks has a MASE above ``ratio`` ×
    ``backtest_mase`` (the level the model was accepted at). Without a usable backtest level,
    or with fewer observed weeks than the rule needs, nothing can be judged: not degraded, and
    ``status`` says why.
    """
    base = {"ratio": ratio, "weeks_required": weeks, "backtest_mase": backtest_mase, "degraded": False}
    if backtest_mase is None or not np.isfinite(backtest_mase) or backtest_mase <= 0:
        return {**base, "status": "no backtest MASE for the model in service"}
    limit = ratio * backtest_mase
    w = weekly.dropna(subset=["mase"]).sort_values("ds")
    recent = w.tail(weeks)
    figures = {
        **base,
        "limit": limit,
        "recent": [
            {"ds": str(pd.Timestamp(d).date()), "mase": float(m)}
            for d, m in zip(recent["ds"], recent["mase"], strict=True)
        ],
        "consecutive_weeks_above": _run_above(w["mase"].to_numpy(), limit),
    }
    if len(recent) < weeks:
        return {**figures, "status": f"{len(recent)} observed week(s), the rule needs {weeks}"}
    degraded = bool((recent["mase"] > limit).all())
    return {**figures, "degraded": degraded, "status": "degraded" if degraded else "healthy"}


def _run_above(values: np.ndarray, limit: float) -> int:
    """How many of the latest values in a row are above ``limit``."""
    n = 0
    for v in values[::-1]:
        if v <= limit:
            break
        n += 1
    return n
