"""The demo's optional ``price_promotions`` table, from the promotions the demo already generates.

Kept apart from :mod:`training.data.demo` (one function, called by the demo writer): each SKU has
one row per week (its Monday) from launch to discontinuation, at its list price, which rises once
a year by a few per cent; in the weeks of the SKU's promotions (``SkuTruth.promo_weeks``, the
weeks whose demand the generator uplifted) the price drops by 10-25 % and ``on_promotion`` is
true. The rows run ``horizon`` weeks past the history's end with the promotions already planned
for those weeks (a business plans promotions ahead), so forecasters with regressors have the
future values they need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.data.demo import DemoCatalogue

PLANNED_SHARE = 0.3  # share of SKUs with a promotion planned inside the forecast horizon


def planned_promo_weeks(cat: DemoCatalogue, horizon: int = 13) -> dict[str, list[int]]:
    """Per SKU, the week indices (counted from ``cat.start``) of promotions planned after the history."""
    weeks = int((cat.end - cat.start).days // 7 + 1)
    rng = np.random.default_rng([cat.seed, 7])
    out: dict[str, list[int]] = {}
    for t in cat.truth:
        if t.discontinued_week is not None or rng.random() >= PLANNED_SHARE or horizon < 1:
            continue
        s = weeks + int(rng.integers(0, horizon))
        out[t.sku] = list(range(s, min(s + int(rng.integers(2, 5)), weeks + horizon)))
    return out


def demo_price_promotions(cat: DemoCatalogue, horizon: int = 13) -> pd.DataFrame:
    """``price_promotions(sku, date, unit_price, on_promotion)`` for a demo catalogue (see the module)."""
    weeks = int((cat.end - cat.start).days // 7 + 1)
    planned = planned_promo_weeks(cat, horizon)
    list_price = cat.products.set_index("sku")["unit_price"].astype(float)
    rng = np.random.default_rng([cat.seed, 11])
    frames = []
    for t in cat.truth:
        last = t.discontinued_week if t.discontinued_week is not None else weeks + horizon
        w = np.arange(t.launch_week, last)
        if w.size == 0:
            continue
        rise = 1.0 + rng.uniform(0.02, 0.06)
        phase = int(rng.integers(0, 52))
        price = list_price[t.sku] * rise ** ((w + phase) // 52)
        promo = np.isin(w, [*t.promo_weeks, *planned.get(t.sku, [])])
        price = np.where(promo, price * (1.0 - rng.uniform(0.10, 0.25)), price)
        frames.append(
            pd.DataFrame(
                {
                    "sku": t.sku,
                    "date": (cat.start + pd.to_timedelta(w * 7, unit="D")).date,
                    "unit_price": np.round(price, 2),
                    "on_promotion": promo,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["sku", "date", "unit_price", "on_promotion"])
    return pd.concat(frames, ignore_index=True)
