"""Aggregate daily movements to the weekly inventory contract beside the weekly demand.

``unique_id, ds, on_hand, receipts, censored``, on exactly the weeks of the weekly demand
(:func:`training.data.weekly.to_weekly_demand`: W-MON week starts, each SKU from the week of
its first sale to the last complete week), so the two frames join one to one on
(``unique_id``, ``ds``):

- ``on_hand``: the stock at the end of the week, i.e. the ``stock_on_hand`` of the last
  movement row at or before the week's Sunday that has one. An ERP writes a row only when
  something moves, so a week without rows carries the previous count forward; rows whose
  ``stock_on_hand`` is empty (allowed by validation) are skipped. NaN while no count is known.
- ``receipts``: the week's ``qty_received`` summed (0 without any).
- ``censored``: the week's sales are a lower bound of its demand because stock ran out.
  The rule: some day of the week ended with ``stock_on_hand <= 0``, or the week ended at
  ``on_hand <= 0`` (a week without rows after a stock-out: nothing could be sold). Why:
  once the shelf is empty any further demand that week is lost, so the sales understate it,
  whether the empty day was the last one or the shelf was refilled later in the week. A
  stock count that reaches exactly 0 by selling the last unit is counted too: whether a
  customer was turned away is not recorded, and treating it as exact demand would bias the
  demand a policy is trained on downwards. A week whose stock is unknown is not censored
  (nothing says it was).
"""

from __future__ import annotations

import pandas as pd

from training.data.weekly import week_start

INVENTORY_COLUMNS = ["unique_id", "ds", "on_hand", "receipts", "censored"]


def empty_inventory() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": pd.Series(dtype=str),
            "ds": pd.Series(dtype="datetime64[ns]"),
            "on_hand": pd.Series(dtype=float),
            "receipts": pd.Series(dtype=float),
            "censored": pd.Series(dtype=bool),
        }
    )


def to_weekly_inventory(movements: pd.DataFrame, demand: pd.DataFrame) -> pd.DataFrame:
    """The weekly inventory of validated ``movements`` on the weeks of ``demand`` (``unique_id, ds, y``).

    ``movements`` has ``sku, date, qty_received, stock_on_hand`` (``stock_on_hand`` may be NaN).
    Rows after the demand's last week are ignored (the partial week past the cut-off).
    """
    if demand.empty:
        return empty_inventory()
    grid = demand[["unique_id", "ds"]].assign(ds=pd.to_datetime(demand["ds"]))
    last = grid["ds"].max()
    m = movements.loc[movements["sku"].astype(str).isin(set(grid["unique_id"]))]
    m = m.assign(unique_id=m["sku"].astype(str), ds=week_start(m["date"]), _date=pd.to_datetime(m["date"]))
    m = m[m["ds"] <= last].sort_values(["unique_id", "_date"], kind="stable")
    stock = pd.to_numeric(m["stock_on_hand"], errors="coerce")
    counted = m.assign(stock=stock)[stock.notna()]
    weekly = pd.concat(
        [
            m.groupby(["unique_id", "ds"])["qty_received"].sum().rename("receipts"),
            counted.groupby(["unique_id", "ds"])["stock"].last().rename("week_end"),
            counted.groupby(["unique_id", "ds"])["stock"].min().rename("week_min"),
        ],
        axis=1,
    ).reset_index()
    # weeks before a SKU's first sale (an opening receipt) carry their stock into the grid
    full = grid.merge(weekly, on=["unique_id", "ds"], how="outer").sort_values(["unique_id", "ds"], ignore_index=True)
    full["on_hand"] = full.groupby("unique_id")["week_end"].ffill()
    out = grid.merge(full, on=["unique_id", "ds"], how="left")
    out["receipts"] = out["receipts"].fillna(0.0).astype(float)
    out["on_hand"] = out["on_hand"].astype(float)
    out["censored"] = ((out["week_min"] <= 0) | (out["on_hand"] <= 0)).fillna(False).astype(bool)
    return out[INVENTORY_COLUMNS].sort_values(["unique_id", "ds"], ignore_index=True)
