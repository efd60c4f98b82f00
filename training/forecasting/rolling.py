"""Rolling-origin forecasts for the order agent: one honest forecast per SKU and week, made the week before.

The RL agent's observation (:func:`rl_agent.features.observe`) holds, at the start of each week ``t``, the
mean forecast demand per week over the next ``L + R`` weeks and the 80 % upper bound of week ``t``'s demand,
made with the demand up to week ``t - 1`` only. The agent trains on about two years of weeks and is
judged on the third, so it needs that forecast at *every* week, not only over the router's backtest
windows (its last 3 x 13 weeks). Re-running the whole router (its XGBoost selector over the full zoo,
global and deep members included) at ~150 origins per SKU costs hours; what this module runs instead is
the cheapest honest stand-in built from the zoo's own members:

- **members**: the zoo's fast local statistical members, by default ``SES`` (seasonally adjusted when the
  history allows M4's test), ``CrostonSBA`` and ``TSB``, exactly as the zoo builds them
  (:func:`training.forecasting.methods.method_registry`), all in one batched statsforecast
  ``cross_validation`` with ``step_size=1`` and ``refit=True``: every member is re-estimated at every
  origin on the weeks before it (the zoo's wrappers have no ``forward``, so ``refit=False`` is not an
  option, and a refit costs little for these members);
- **selection**, the router's role: per SKU and origin, the member with the lowest mean squared
  one-step error over the previous ``selection_weeks`` weeks (errors of weeks before the origin only;
  the first member until one error is known). Squared error, because the agent reads a mean;
- **80 % bound**: the chosen member's one-step forecast plus the 80 % quantile of its own past one-step
  errors (the previous ``interval_weeks`` weeks, at least ``min_errors`` of them; NaN before that, where
  the catalogue falls back to the no-forecast width): a rolling split-conformal bound, because these
  members have no native intervals.

Origins run from the week after the first ``min_history`` weeks to the week after the last one (that
last row is the forecast for the next order, what the orders step recommends with). Forecasts are made on the recorded
sales: censored weeks are what a live forecaster would have seen (imputing them first would use a
centred window, i.e. later weeks).

Output: ``unique_id, ds, yhat, hi80, method``; the row at ``ds`` is the forecast made at the start of
week ``ds`` (data through the week before): ``yhat`` the mean per week over weeks ``ds .. ds + h - 1``
with ``h`` the SKU's ``L + R``, ``hi80`` the 80 % bound of week ``ds``. That is the per-origin contract
of :func:`rl_agent.catalogue.prepare_catalogue`'s ``forecasts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from training.forecasting.contract import Setup
from training.forecasting.methods import method_registry
from training.forecasting.statistical import batched_statsforecast

FAST_MEMBERS = ("SES", "CrostonSBA", "TSB")
COLUMNS = ["unique_id", "ds", "yhat", "hi80", "method"]


def rolling_forecasts(
    demand: pd.DataFrame,
    horizons: Mapping[str, int] | int,
    members: Sequence[str] = FAST_MEMBERS,
    min_history: int = 8,
    selection_weeks: int = 26,
    interval_weeks: int = 52,
    min_errors: int = 8,
    season_length: int = 52,
    freq: str = "W-MON",
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Per-origin forecasts of ``demand`` (``unique_id, ds, y``, weekly) for every SKU with at least
    ``min_history`` weeks; ``horizons`` is each SKU's ``L + R`` in weeks (one int for all; missing: 1)."""
    if min_history < 2 or min_errors < 1:
        raise ValueError("min_history must be >= 2 and min_errors >= 1")
    frame = demand[["unique_id", "ds", "y"]].assign(ds=lambda d: pd.to_datetime(d["ds"]))
    frame = frame.sort_values(["unique_id", "ds"], ignore_index=True)
    h_of = _horizons(frame["unique_id"].unique(), horizons)
    longest = max(int(h_of.max()), 1) if len(h_of) else 1
    registry = method_registry()
    setup = Setup(season_length=season_length, horizon=longest, freq=freq)
    sf_members = [registry[name].member(setup) for name in members]
    step = pd.Timedelta(weeks=1)
    parts = []
    lengths = frame.groupby("unique_id", sort=False)["y"].transform("size")
    for length, group in frame[lengths >= min_history].groupby(lengths[lengths >= min_history]):
        # Pad ``longest`` zero weeks after the end, so origins up to the last week have a full
        # horizon to be "tested" on; a forecast never sees weeks after its origin, so the padding
        # changes no forecast, only gives the cross-validation its windows (their y is dropped).
        pad = group.groupby("unique_id", sort=False)["ds"].max()
        future = pd.DataFrame(
            {
                "unique_id": np.repeat(pad.index.to_numpy(), longest),
                "ds": (pad.to_numpy()[:, None] + step * np.arange(1, longest + 1)[None, :]).ravel(),
                "y": 0.0,
            }
        )
        padded = pd.concat([group, future], ignore_index=True).sort_values(["unique_id", "ds"], ignore_index=True)
        cv = batched_statsforecast(sf_members, freq, n_jobs).cross_validation(
            df=padded, h=longest, n_windows=int(length) - min_history + 1, step_size=1, refit=True
        )
        parts.append(_select(cv, list(members), h_of, group, selection_weeks, interval_weeks, min_errors))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True).sort_values(["unique_id", "ds"], ignore_index=True)[COLUMNS]


def _horizons(skus: np.ndarray, horizons: Mapping[str, int] | int) -> pd.Series:
    values = [horizons] * len(skus) if isinstance(horizons, int) else [int(horizons.get(str(s), 1)) for s in skus]
    return pd.Series(np.maximum(values, 1), index=skus, dtype=int)


def _select(
    cv: pd.DataFrame,
    members: list[str],
    h_of: pd.Series,
    observed: pd.DataFrame,
    selection_weeks: int,
    interval_weeks: int,
    min_errors: int,
) -> pd.DataFrame:
    """One row per (SKU, origin): the selected member's horizon mean and its conformal 80 % bound."""
    cv = cv.reset_index(drop=True) if "unique_id" in cv.columns else cv.reset_index()
    cv["unique_id"] = cv["unique_id"].astype(observed["unique_id"].dtype)
    cv["step"] = ((cv["ds"] - cv["cutoff"]) / pd.Timedelta(weeks=1)).round().astype(int)
    keys = ["unique_id", "cutoff"]
    window = cv[cv["step"] <= cv["unique_id"].map(h_of).to_numpy()]
    mean = window.groupby(keys, sort=True)[members].mean().clip(lower=0)
    first = cv[cv["step"] == 1].set_index(keys).sort_index()
    # The one-step error of the forecast made at each origin, known once its week is observed; the
    # padded weeks after the data have no actual (NaN), so they never enter an error statistic.
    actual = observed.set_index(["unique_id", "ds"])["y"]
    y_next = actual.reindex(pd.MultiIndex.from_arrays([first.index.get_level_values(0), first["ds"]])).to_numpy()
    errors = pd.DataFrame({m: y_next - first[m].to_numpy(float) for m in members}, index=first.index)
    by_sku = errors.groupby(level="unique_id", sort=False)
    # shift(1): the origin at cutoff c forecasts week c + 1; the last error it may use is that of the
    # forecast made at c - 1 (for week c, observed by then).
    past = by_sku.shift(1)
    grouped = past.groupby(level="unique_id", sort=False)
    mse = grouped.transform(lambda s: (s**2).rolling(selection_weeks, min_periods=1).mean())
    q80 = grouped.transform(lambda s: s.rolling(interval_weeks, min_periods=min_errors).quantile(0.8))
    choice = np.where(mse.isna().all(axis=1), 0, np.argmin(mse.fillna(np.inf).to_numpy(), axis=1))
    rows = np.arange(len(first))
    one_step = first[members].to_numpy(float)[rows, choice]
    bound = one_step + q80.to_numpy(float)[rows, choice]
    out = pd.DataFrame(
        {
            "unique_id": first.index.get_level_values(0),
            "ds": first["ds"].to_numpy(),
            "yhat": mean.reindex(first.index).to_numpy(float)[rows, choice],
            "hi80": np.maximum(bound, 0.0),
            "method": np.asarray(members)[choice],
        }
    )
    return out


def horizons_from_products(products: pd.DataFrame, review_period: int = 1) -> dict[str, int]:
    """Each SKU's ``L + R`` in weeks from the products table (``sku, lead_time_weeks``)."""
    table = products.drop_duplicates("sku")
    leads = zip(table["sku"], table["lead_time_weeks"], strict=True)
    return {str(sku): int(lead) + int(review_period) for sku, lead in leads}
