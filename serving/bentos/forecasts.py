"""Conversions between the request/response models and the router's long frames (no I/O, no state)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from serving.bentos.schemas import SeriesIn
from stockml.settings import Settings
from training.router.train import PatternRule

ORDER_FORMULA = (
    "S = sum(yhat, weeks 1..L+R) + z(service_level) * sqrt(sum(sigma_t^2)), sigma_t = (hi80_t - yhat_t) / z(0.90); "
    "order_qty = max(0, S - on_hand - on_order), rounded up to whole units and to min_order_qty"
)


def json_num(v: Any) -> float | None:
    """A JSON-safe float: NaN/inf (and non-numbers) become null."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def frame(items: list[SeriesIn]) -> pd.DataFrame:
    """Request items -> the router's long history frame (unique_id, ds, y)."""
    n = sum(len(i.history) for i in items)
    uid = np.empty(n, dtype=object)
    ds = np.empty(n, dtype="datetime64[ns]")
    y = np.empty(n, dtype="float64")
    k = 0
    for item in items:
        m = len(item.history)
        uid[k : k + m] = item.sku
        ds[k : k + m] = [np.datetime64(o.ds, "ns") for o in item.history]
        y[k : k + m] = [o.y for o in item.history]
        k += m
    return pd.DataFrame({"unique_id": uid, "ds": ds, "y": y})


def per_sku(fc: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Router output (long) -> {sku: cacheable JSON-able forecast without ids}."""
    out: dict[str, dict[str, Any]] = {}
    fc = fc.sort_values(["unique_id", "step"])
    for sku, part in fc.groupby("unique_id", sort=False):
        first = part.iloc[0]
        points = [
            {
                "ds": pd.Timestamp(ds).date().isoformat(),
                "step": int(step),
                **{c: json_num(v) for c, v in zip(("yhat", "lo80", "hi80", "lo95", "hi95"), vals, strict=True)},
            }
            for ds, step, *vals in zip(
                part["ds"],
                part["step"],
                part["yhat"],
                part["lo80"],
                part["hi80"],
                part["lo95"],
                part["hi95"],
                strict=True,
            )
        ]
        try:
            weights = {str(k): float(v) for k, v in json.loads(first["weights"]).items()}
        except (TypeError, ValueError):
            weights = {}
        out[str(sku)] = {
            "method": str(first["method"]),
            "weights": weights,
            "confidence": json_num(first["confidence"]),
            "pattern": str(first["pattern"]),
            "explanation": str(first["explanation"]),
            "forecasts": points,
        }
    return out


def rule_of(router: Any, settings: Settings) -> tuple[PatternRule, int, str]:
    """(pattern rule, season length, where they come from): the loaded router's, else the settings'."""
    if router is not None:
        return router.rule, router.season_length, "router"
    s = settings
    return PatternRule(s.adi_cutoff, s.cv2_cutoff, tuple(s.xyz_cutoffs)), s.season_length, "settings"
