"""Aggregate daily movements to the weekly demand contract (unique_id, ds, y).

Weeks start on Monday (pandas ``W-MON`` labelling by week start). Each SKU's series runs
from the week of its first sale to the last complete week before the cut-off, zero-filled:
a week with no recorded sale is a week with zero demand, which is what intermittent-demand
methods need to see.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


def week_start(dates: pd.Series | pd.Timestamp | str) -> pd.Series | pd.Timestamp:
    """Monday (00:00) of the Monday-to-Sunday week each date falls in: the ``ds`` of the demand contract.

    The one week-start rule of the code base: a Series gives a Series (same index), a single
    date gives a Timestamp.
    """
    if isinstance(dates, pd.Series):
        d = pd.to_datetime(dates).dt.normalize()
        return d - pd.to_timedelta(d.dt.weekday, unit="D")
    return pd.Timestamp(week_start_of(pd.Timestamp(dates).date()))


def last_complete_week_start(cutoff: pd.Timestamp) -> pd.Timestamp:
    """Monday of the last Monday-to-Sunday week that ends on or before ``cutoff``."""
    return week_start(pd.Timestamp(cutoff) + pd.Timedelta(days=1)) - pd.Timedelta(weeks=1)


def default_last_week(movements: pd.DataFrame) -> pd.Timestamp:
    """Without an explicit cut-off, the week of the last movement counts as complete.

    An extract is normally taken after the week closes; a scheduler passes its logical date
    as the cut-off instead, so a mid-week run never sees a partial week.
    """
    return week_start(pd.to_datetime(movements["date"]).max())


def to_weekly_demand(movements: pd.DataFrame, cutoff: pd.Timestamp | None = None) -> pd.DataFrame:
    """Weekly demand per SKU, zero-filled from the first sale to the last complete week."""
    last = last_complete_week_start(cutoff) if cutoff is not None else default_last_week(movements)
    df = movements.assign(ds=week_start(movements["date"]))
    df = df[df["ds"] <= last]
    sold = df[df["qty_sold"] > 0]
    weekly = sold.groupby(["sku", "ds"], sort=True)["qty_sold"].sum()
    if weekly.empty:
        return pd.DataFrame(
            {"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype="datetime64[ns]"), "y": pd.Series(dtype=float)}
        )
    weekly = weekly.rename_axis(["unique_id", "ds"])
    first = weekly.reset_index().groupby("unique_id")["ds"].min()
    return fill_weeks(weekly, first, last)


def fill_weeks(weekly: pd.Series, first: pd.Series, last: pd.Series | pd.Timestamp) -> pd.DataFrame:
    """Every week from ``first[uid]`` to ``last`` (per uid or common) with y from ``weekly`` or 0.

    ``weekly`` is y indexed by (unique_id, ds) with Monday week starts. Vectorised: the grid is
    built with numpy for all series at once (serving calls this on every request).
    """
    last = last.reindex(first.index) if isinstance(last, pd.Series) else pd.Series(last, index=first.index)
    n_weeks = ((last - first).dt.days // 7 + 1).astype(int)
    uid = np.repeat(first.index.to_numpy(), n_weeks.to_numpy())
    offsets = np.concatenate([np.arange(n) for n in n_weeks.to_numpy()])
    ds = np.repeat(first.to_numpy(), n_weeks.to_numpy()) + pd.to_timedelta(offsets * 7, unit="D").to_numpy()
    out = pd.DataFrame({"unique_id": uid, "ds": ds})
    out = out.merge(weekly.rename("y").reset_index(), on=["unique_id", "ds"], how="left")
    out["y"] = out["y"].fillna(0.0).astype(float)
    return out.sort_values(["unique_id", "ds"], ignore_index=True)


def week_number(d: dt.date) -> int:
    """The W-MON week of one date as an integer (0001-01-01 was a Monday): dates in the same Monday-to-Sunday
    week share it, consecutive weeks differ by 1, and ``week_start_of(d) == date.fromordinal(7 * n + 1)``.
    The scalar form of :func:`week_start`, for request validation that runs per observation."""
    return (d.toordinal() - 1) // 7


def week_start_of(d: dt.date) -> dt.date:
    """Monday of ``d``'s week: :func:`week_start` for one date."""
    return dt.date.fromordinal(7 * week_number(d) + 1)


REGRESSOR_COLUMNS = ["unit_price", "on_promotion"]


def to_weekly_regressors(price_promotions: pd.DataFrame) -> pd.DataFrame:
    """Weekly regressors beside the weekly demand: ``unique_id, ds, unit_price, on_promotion``.

    From validated ``price_promotions`` rows: weeks start on Monday (``W-MON``) like the demand;
    ``unit_price`` is the mean of the week's prices, ``on_promotion`` is 1.0 when any day of the
    week is on promotion (0.0 otherwise). Weeks after the demand cut-off are kept: they are the
    planned prices and promotions that forecasters with regressors read over the horizon.
    """
    if price_promotions.empty:
        return pd.DataFrame(
            {
                "unique_id": pd.Series(dtype=str),
                "ds": pd.Series(dtype="datetime64[ns]"),
                "unit_price": pd.Series(dtype=float),
                "on_promotion": pd.Series(dtype=float),
            }
        )
    df = price_promotions.assign(
        unique_id=price_promotions["sku"].astype(str),
        ds=week_start(price_promotions["date"]),
        unit_price=pd.to_numeric(price_promotions["unit_price"], errors="coerce").astype(float),
        on_promotion=price_promotions["on_promotion"].astype(bool).astype(float),
    )
    weekly = df.groupby(["unique_id", "ds"], sort=True).agg(
        unit_price=("unit_price", "mean"), on_promotion=("on_promotion", "max")
    )
    return weekly.reset_index()
