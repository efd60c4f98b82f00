"""Decisions in service: what the recommended orders in ``stock_orders`` cost once the weeks came.

An order recommendation carries the inventory week it started from (``as_of_week``), its policy
and the cost per week its policy expected. The weeks observed since in the weekly inventory
(on hand at week end, and the weeks a stock-out censored sales) and the weekly demand give what
happened: holding cost on the stock actually held, a shortage penalty on the sales lost in
censored weeks, the fill rate and the stock-outs. The cost terms are the agent's own
(:class:`rl_agent.advice.ProductTerms` → :meth:`rl_agent.dynamics.CostConfig.from_product`), so
realised and expected cost are in the same money.

Lost sales are not observed: in a censored week they are estimated as the SKU's mean weekly
demand over the uncensored weeks of the window minus what was sold (0 when it sold more). With
no uncensored week the estimate is 0 and the SKU's fill rate reads 1: ``censored_weeks`` says
how far to trust it.

Plain frames in, plain values out.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from rl_agent.advice import ProductTerms
from rl_agent.dynamics import CostConfig

SKU_COLUMNS = [
    "sku", "policy", "weeks", "sold", "lost", "fill_rate", "stockout_weeks",
    "holding_cost", "shortage_cost", "realised_cost_per_period", "expected_cost_per_period",
]  # fmt: skip


def realised_decisions(
    orders: pd.DataFrame,
    demand: pd.DataFrame,
    inventory: pd.DataFrame,
    products: pd.DataFrame,
    holding_rate_per_year: float = 0.25,
    penalty_per_unit: float | None = None,
) -> pd.DataFrame:
    """One row per recommended order with the weeks observed after its ``as_of_week``.

    ``orders``: sku, as_of_week, policy, expected_cost_per_period (``stock_orders``);
    ``demand``: unique_id (or sku), ds, y; ``inventory``: unique_id (or sku), ds, on_hand,
    censored; ``products``: sku, unit_cost, unit_price, lead_time_weeks. SKUs without observed
    weeks yet, without a policy or without usable prices are left out.
    """
    inv = _weekly(inventory).merge(_weekly(demand)[["sku", "ds", "y"]], on=["sku", "ds"], how="left")
    prices = products.set_index("sku")
    rows = []
    for order in orders.dropna(subset=["policy"]).itertuples():
        weeks = inv[(inv["sku"] == order.sku) & (inv["ds"] > pd.Timestamp(order.as_of_week))]
        if weeks.empty or order.sku not in prices.index:
            continue
        p = prices.loc[order.sku]
        try:
            costs = _costs(p, holding_rate_per_year, penalty_per_unit)
        except ValueError:
            continue
        rows.append(_realised(order, weeks, costs))
    return pd.DataFrame(rows, columns=SKU_COLUMNS)


def _costs(product: pd.Series, holding_rate: float, penalty: float | None) -> CostConfig:
    terms = ProductTerms(
        unit_cost=float(product["unit_cost"]),
        unit_price=float(product["unit_price"]),
        lead_time=int(product.get("lead_time_weeks", 0) or 0),
        holding_rate_per_year=holding_rate,
        penalty_per_unit=penalty,
    )
    return CostConfig.from_product(
        terms.unit_cost, terms.unit_price, terms.holding_rate_per_year, terms.penalty_per_unit
    )


def _realised(order: object, weeks: pd.DataFrame, costs: CostConfig) -> dict:
    sold = weeks["y"].fillna(0.0).to_numpy(float)
    censored = weeks["censored"].fillna(False).to_numpy(bool)
    typical = float(sold[~censored].mean()) if (~censored).any() else 0.0
    lost = np.where(censored, np.maximum(typical - sold, 0.0), 0.0)
    on_hand = weeks["on_hand"].fillna(0.0).clip(lower=0).to_numpy(float)
    holding = float(costs.holding * on_hand.sum())
    shortage = float(costs.penalty * lost.sum())
    demand = sold.sum() + lost.sum()
    expected = getattr(order, "expected_cost_per_period", None)
    return {
        "sku": order.sku,  # type: ignore[attr-defined]
        "policy": order.policy,  # type: ignore[attr-defined]
        "weeks": len(weeks),
        "sold": float(sold.sum()),
        "lost": float(lost.sum()),
        "fill_rate": float(sold.sum() / demand) if demand > 0 else 1.0,
        "stockout_weeks": int(censored.sum()),
        "holding_cost": holding,
        "shortage_cost": shortage,
        "realised_cost_per_period": (holding + shortage) / len(weeks),
        "expected_cost_per_period": float(expected) if expected is not None and pd.notna(expected) else np.nan,
    }


def _weekly(frame: pd.DataFrame) -> pd.DataFrame:
    f = frame.rename(columns={"unique_id": "sku"})
    return f.assign(ds=pd.to_datetime(f["ds"]), sku=f["sku"].astype(str))


def decisions_by_policy(realised: pd.DataFrame) -> list[dict]:
    """Per policy: SKUs, realised and expected cost per week (summed over SKUs), fill rate
    (units sold / estimated demand over all its SKUs) and stock-out weeks."""
    if realised.empty:
        return []
    g = realised.groupby("policy")
    out = pd.DataFrame(
        {
            "skus": g.size(),
            "weeks": g["weeks"].sum(),
            "realised_cost_per_period": g["realised_cost_per_period"].sum(),
            "expected_cost_per_period": g["expected_cost_per_period"].sum(min_count=1),
            "fill_rate": g["sold"].sum() / (g["sold"].sum() + g["lost"].sum()).replace(0, np.nan),
            "stockout_weeks": g["stockout_weeks"].sum(),
            "stockout_share": g["stockout_weeks"].sum() / g["weeks"].sum(),
        }
    ).reset_index()
    out["fill_rate"] = out["fill_rate"].fillna(1.0)
    return json.loads(out.to_json(orient="records", double_precision=6))
