"""A synthetic agro-inputs catalogue that behaves like a real distributor's ERP extract.

Why synthetic: tests and benchmarks need data whose truth is known (each SKU's generating
demand pattern, the anomalies injected) and that anyone can regenerate from a seed.

What it models, per SKU and week:
- a yearly crop-season curve of one of four shapes (``SEASON_SHAPES``: the category's main
  season, e.g. fungicides in the wet growing season, the other crop season, both, or none), a trend;
- a demand pattern: smooth and erratic products sell almost every week, intermittent and
  lumpy ones in a minority of weeks; erratic and lumpy ones with very variable sizes
  (Syntetos-Boylan's four classes; about half the catalogue is intermittent or lumpy);
- promotions (multi-week uplift) and ordinary outlier weeks;
- late launches (short history) and discontinued products;
- an inventory with lead times replenished by a base-stock policy with supplier
  failures, so stock-outs censor sales (sales = min(demand, stock));
- a few anomalous products (extreme one-off spikes, sudden sustained level shifts);
- a few dirty rows (negative or unknown SKU or duplicated) for the validation layer.

The ground truth keeps the last ``HOLDOUT_WEEKS`` weeks of each SKU's *uncensored* weekly demand
(before stock-outs cut it to the sales): held-out demand that a replenishment policy can be
evaluated on, which the source's sales cannot give (:func:`load_holdout_demand`). The extreme
spikes injected as anomalies (a tender received and shipped the same week) are sales, not part of it.

The weekly simulation is spread to daily ``stock_movements`` rows (only days with a
movement, as an ERP records them). The ground truth goes to a separate JSON file, never
into the source tables.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.weekly import week_start

PATTERNS = ("smooth", "erratic", "intermittent", "lumpy")
PATTERN_SHARES = (0.26, 0.24, 0.26, 0.24)
CATEGORIES = {
    "Fungicides": ("Azoxystrobin", "Mancozeb", "Tebuconazole", "Copper oxychloride", "Chlorothalonil"),
    "Herbicides": ("Glyphosate", "2,4-D", "Atrazine", "Paraquat", "Glufosinate"),
    "Insecticides": ("Lambda-cyhalothrin", "Imidacloprid", "Chlorpyrifos", "Acetamiprid", "Bifenthrin"),
    "Seed treatment": ("Thiamethoxam", "Fludioxonil", "Metalaxyl", "Carbendazim", "Thiram"),
    "Adjuvants": ("Mineral oil", "Silicone surfactant", "Ammonium sulfate", "Drift reducer", "Buffer"),
}
# Peak week of the main crop season per category (southern-hemisphere soy calendar: seed treatment
# and herbicides at planting, fungicides and insecticides a month or so later). Weeks count from the
# start of the history. Within a few weeks of each other: a buyer's "spring season".
SEASON_PEAK_WEEK = {"Fungicides": 46, "Herbicides": 44, "Insecticides": 47, "Seed treatment": 43, "Adjuvants": 45}
# Yearly shapes of demand: the category's main (spring-summer) crop season, the other (autumn) crop
# season half a year later, both seasons (two peaks a year), or none (sells the same all year).
SEASON_SHAPES = ("spring", "autumn", "double", "none")
SEASON_SHAPE_SHARES = (0.35, 0.25, 0.2, 0.2)
PACKS = ("1 L", "5 L", "20 L", "1 kg", "10 kg")
ANOMALY_SHARE = 0.04
HOLDOUT_WEEKS = 52  # weeks of uncensored demand kept in the ground truth


@dataclass
class SkuTruth:
    """What generated one SKU; used by tests and benchmarks to score the platform."""

    sku: str
    pattern: str
    category: str
    anomaly: str | None
    launch_week: int
    discontinued_week: int | None
    stockout_weeks: list[int] = field(default_factory=list)
    promo_weeks: list[int] = field(default_factory=list)
    anomaly_weeks: list[int] = field(default_factory=list)
    season_shape: str = "spring"  # one of SEASON_SHAPES


@dataclass
class DemoCatalogue:
    products: pd.DataFrame
    movements: pd.DataFrame
    truth: list[SkuTruth]
    dirty_rows: list[dict]
    start: pd.Timestamp
    end: pd.Timestamp
    seed: int
    # {sku: uncensored weekly demand of the last HOLDOUT_WEEKS weeks (oldest first)}
    holdout_demand: dict[str, list[float]] = field(default_factory=dict)

    def holdout_weeks(self) -> list[str]:
        """The Monday of each held-out week (ISO dates), oldest first: the last weeks up to ``end``."""
        n = len(next(iter(self.holdout_demand.values()), []))
        first = week_start(self.end) - pd.Timedelta(weeks=n - 1)
        return [str((first + pd.Timedelta(weeks=k)).date()) for k in range(n)]

    def holdout_frame(self) -> pd.DataFrame:
        """The uncensored demand of the held-out weeks as ``unique_id, ds, y`` (what the file keeps)."""
        return holdout_frame(self.holdout_weeks(), self.holdout_demand)

    def truth_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(t) for t in self.truth]).set_index("sku")

    def write_truth(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "seed": self.seed,
            "start": str(self.start.date()),
            "end": str(self.end.date()),
            "skus": [asdict(t) for t in self.truth],
            "dirty_rows": self.dirty_rows,
            "holdout_demand": {"weeks": self.holdout_weeks(), "skus": self.holdout_demand},
        }
        path.write_text(json.dumps(payload, indent=1, default=str))


def load_truth(path: Path) -> pd.DataFrame:
    """Read the ground-truth file written by :meth:`DemoCatalogue.write_truth`."""
    payload = json.loads(Path(path).read_text())
    return pd.DataFrame(payload["skus"]).set_index("sku")


def load_holdout_demand(path: Path) -> pd.DataFrame:
    """The uncensored weekly demand of the held-out weeks from the ground-truth file: ``unique_id, ds, y``.

    Raises ``ValueError`` for a file written before the generator kept it (regenerate the demo).
    """
    payload = json.loads(Path(path).read_text())
    if "holdout_demand" not in payload:
        raise ValueError(f"{path} has no holdout_demand: regenerate it with `stockml demo-data`")
    held = payload["holdout_demand"]
    return holdout_frame(held["weeks"], held["skus"])


def holdout_frame(week_dates: list[str], skus: dict[str, list[float]]) -> pd.DataFrame:
    """``unique_id, ds, y`` from the held-out weeks and each SKU's demand in them."""
    weeks = pd.to_datetime(pd.Series(week_dates, dtype=str))
    rows = [
        pd.DataFrame({"unique_id": sku, "ds": weeks, "y": pd.Series(values, dtype=float)})
        for sku, values in skus.items()
    ]
    if not rows:
        return pd.DataFrame({"unique_id": pd.Series(dtype=str), "ds": weeks[:0], "y": pd.Series(dtype=float)})
    return pd.concat(rows, ignore_index=True)


def season_shape(seed: int, index: int) -> str:
    """The planted yearly shape of SKU ``index``, from its own random stream (the other draws keep theirs)."""
    return SEASON_SHAPES[int(np.random.default_rng([seed, index, 7]).choice(len(SEASON_SHAPES), p=SEASON_SHAPE_SHARES))]


def _weekly_demand(
    rng: np.random.Generator, pattern: str, weeks: int, category: str, shape: str = "spring"
) -> tuple[np.ndarray, list[int]]:
    """Uncensored weekly demand for one SKU, plus its promotion weeks."""
    t = np.arange(weeks)
    # Strong enough (0.5-0.9 of the level) to be seen through an erratic product's noise.
    amplitude = 0.5 + (rng.uniform(0.2, 0.75) - 0.2) / 0.55 * 0.4
    peak = SEASON_PEAK_WEEK[category] + rng.integers(-3, 4) // 3 + (26 if shape == "autumn" else 0)
    cycles = {"spring": 1, "autumn": 1, "double": 2, "none": 0}[shape]
    season = 1.0 + amplitude * np.cos(2 * np.pi * cycles * (t - peak) / 52.0)
    trend = 1.0 + rng.uniform(-0.3, 0.5) * t / max(weeks - 1, 1)
    stable_sizes = pattern in ("smooth", "intermittent")
    size_cv2 = rng.uniform(0.03, 0.2) if stable_sizes else rng.uniform(0.9, 2.0)
    shape = 1.0 / size_cv2
    if pattern in ("smooth", "erratic"):
        level = rng.lognormal(np.log(40), 0.8)
        p_occ = np.full(weeks, rng.uniform(0.97, 1.0))
    else:
        level = rng.lognormal(np.log(15), 0.8)
        base_p = rng.uniform(0.12, 0.5)
        # Seasonality acts on how often a slow mover sells, not only on how much.
        p_occ = np.clip(base_p * season, 0.02, 0.6)
        season = np.ones(weeks)
    occurs = rng.random(weeks) < p_occ
    sizes = rng.gamma(shape, level / shape, weeks) * season * trend
    demand = np.where(occurs, np.maximum(1.0, np.round(sizes)), 0.0)
    # Promotions: a 2-4 week uplift a couple of times in the history.
    promo_weeks: list[int] = []
    for _ in range(rng.integers(0, 3)):
        s = int(rng.integers(0, max(weeks - 4, 1)))
        span = range(s, min(s + int(rng.integers(2, 5)), weeks))
        for w in span:
            if demand[w] > 0:
                demand[w] = np.round(demand[w] * rng.uniform(1.4, 2.2))
        promo_weeks.extend(span)
    # Ordinary outliers: the odd big order, part of normal life.
    for w in np.flatnonzero(occurs & (rng.random(weeks) < 0.01)):
        demand[w] = np.round(demand[w] * rng.uniform(2.0, 3.5))
    return demand, promo_weeks


def _inject_spike(rng: np.random.Generator, sales: np.ndarray, receipts: np.ndarray, active: slice) -> list[int]:
    """A one-off extreme sale (a tender shipped straight through: received and sold that week)."""
    idx = np.arange(len(sales))[active]
    nz = sales[idx][sales[idx] > 0]
    high = float(np.quantile(nz, 0.75)) if nz.size else 1.0
    weeks = sorted(rng.choice(idx[len(idx) // 5 :], size=int(rng.integers(1, 3)), replace=False).tolist())
    for w in weeks:
        extra = np.round(high * rng.uniform(30, 60)) - sales[w]
        sales[w] += extra
        receipts[w] += extra
    return weeks


def _inject_level_shift(rng: np.random.Generator, demand: np.ndarray, active: slice) -> list[int]:
    """A sudden sustained level shift of demand (a new big customer, a registration change)."""
    idx = np.arange(len(demand))[active]
    nz = demand[idx][demand[idx] > 0]
    typical = float(np.median(nz)) if nz.size else 1.0
    start = int(idx[int(len(idx) * rng.uniform(0.55, 0.75))])
    end = int(idx[-1]) + 1
    factor = rng.uniform(5.0, 8.0)
    occurring = demand[start:end] > 0
    boosted = np.where(occurring, np.round(demand[start:end] * factor), 0)
    # A surge also makes a slow mover sell every week.
    fill = np.round(typical * factor * rng.uniform(0.7, 1.3, end - start))
    demand[start:end] = np.where(occurring, boosted, fill)
    return list(range(start, end))


def _simulate_inventory(
    rng: np.random.Generator, demand: np.ndarray, lead: int, active: slice
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Base-stock replenishment with supplier failures; returns sales, receipts, stock, stock-out weeks."""
    weeks = len(demand)
    sales = np.zeros(weeks)
    receipts = np.zeros(weeks)
    stock = np.zeros(weeks)
    pipeline = np.zeros(weeks + lead + 1)
    hist = demand[active]
    level = max(float(hist[: min(len(hist), 26)].mean()) if hist.size else 1.0, 0.5)
    spread = float(hist.std()) if hist.size else 1.0
    on_hand = np.ceil(level * (lead + 1) + 2.5 * spread * np.sqrt(lead + 1))
    stockouts: list[int] = []
    for w in range(active.start, active.stop):
        on_hand += pipeline[w]
        receipts[w] = pipeline[w]
        sold = min(demand[w], on_hand)
        if sold < demand[w]:
            stockouts.append(w)
        sales[w] = sold
        on_hand -= sold
        stock[w] = on_hand
        # The buyer re-estimates the demand level every week (exponential smoothing of demand,
        # seen through lost-sales notes), so the base stock follows trends and shifts.
        level = 0.9 * level + 0.1 * demand[w]
        target = np.ceil(level * (lead + 1) + 2.5 * spread * np.sqrt(lead + 1))
        position = on_hand + pipeline[w + 1 : w + lead + 1].sum()
        order = max(0.0, np.ceil(target - position))
        # Suppliers sometimes fail to deliver an order at all (about 1 in 60).
        if order > 0 and rng.random() > 1 / 60:
            pipeline[w + lead] += order
    return sales, receipts, stock, stockouts


def _spread_to_days(
    rng: np.random.Generator,
    sku: str,
    start: pd.Timestamp,
    sales: np.ndarray,
    receipts: np.ndarray,
    stock: np.ndarray,
    active: slice,
) -> pd.DataFrame:
    """Split each week's sales over working days (Mon-Sat); one row per day with a movement."""
    w = np.arange(active.start, active.stop)
    w = w[(sales[w] > 0) | (receipts[w] > 0)]
    n = len(w)
    # Each selling week sells on a random subset of the six working days.
    open_days = rng.random((n, 6)) < rng.uniform(0.2, 0.9)
    open_days[np.arange(n), rng.integers(0, 6, n)] = True
    probs = open_days / open_days.sum(axis=1, keepdims=True)
    day_sales = rng.multinomial(sales[w].astype(np.int64), probs).astype(float)
    day_rec = np.zeros((n, 6))
    day_rec[:, 0] = receipts[w]
    # Stock at the end of each day: the week's closing stock plus what is still to be sold.
    later_sales = np.cumsum(day_sales[:, ::-1], axis=1)[:, ::-1] - day_sales
    end_stock = stock[w][:, None] + later_sales
    keep = (day_sales > 0) | (day_rec > 0)
    wi, di = np.nonzero(keep)
    dates = np.datetime64(start.date()) + (w[wi] * 7 + di).astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "sku": sku,
            "date": pd.to_datetime(dates).date,
            "qty_sold": day_sales[wi, di],
            "qty_received": day_rec[wi, di],
            "stock_on_hand": end_stock[wi, di],
        }
    )


def generate_catalogue(
    n_skus: int = 300, weeks: int = 156, seed: int = 42, end: str = "2026-11-22", dirty_rows: bool = True
) -> DemoCatalogue:
    """Generate the products and stock_movements tables and their ground truth.

    ``end`` is the last day (a Sunday) of the history; weeks start on Mondays (W-MON).
    """
    if n_skus < 1 or weeks < 8:
        raise ValueError("need at least 1 SKU and 8 weeks")
    rng = np.random.default_rng(seed)
    end_ts = pd.Timestamp(end)
    start = week_start(end_ts - pd.Timedelta(weeks=weeks) + pd.Timedelta(days=1))
    cats = list(CATEGORIES)
    product_rows, movement_rows, truth = [], [], []
    holdout: dict[str, list[float]] = {}
    n_anomalous = max(1, round(n_skus * ANOMALY_SHARE)) if n_skus >= 10 else 0
    anomalous = set(rng.choice(n_skus, size=n_anomalous, replace=False).tolist())
    sku_rngs = rng.spawn(n_skus)
    for i, srng in enumerate(sku_rngs):
        sku = f"SKU-{i + 1:05d}"
        category = cats[int(srng.integers(len(cats)))]
        pattern = PATTERNS[int(srng.choice(4, p=PATTERN_SHARES))]
        launch = int(srng.integers(weeks // 3, weeks - 26)) if srng.random() < 0.12 else 0
        discontinued = int(srng.integers(weeks - weeks // 3, weeks - 4)) if srng.random() < 0.07 else None
        if discontinued is not None and discontinued - launch < 26:
            discontinued = None
        active = slice(launch, discontinued if discontinued is not None else weeks)
        shape = season_shape(seed, i)
        demand, promos = _weekly_demand(srng, pattern, weeks, category, shape)
        demand[: active.start] = 0
        demand[active.stop :] = 0
        anomaly = (("extreme_spike", "level_shift")[int(srng.integers(2))]) if i in anomalous else None
        anomaly_weeks = _inject_level_shift(srng, demand, active) if anomaly == "level_shift" else []
        lead = int(srng.choice([1, 2, 3, 4, 6, 8]))
        holdout[sku] = demand[-min(HOLDOUT_WEEKS, weeks) :].tolist()  # after the level shift, before censoring
        sales, receipts, stock, stockouts = _simulate_inventory(srng, demand, lead, active)
        if anomaly == "extreme_spike":
            anomaly_weeks = _inject_spike(srng, sales, receipts, active)
        movement_rows.append(_spread_to_days(srng, sku, start, sales, receipts, stock, active))
        ingredient = CATEGORIES[category][int(srng.integers(5))]
        cost = round(float(srng.lognormal(np.log(25), 0.7)), 2)
        product_rows.append(
            (
                sku,
                f"{ingredient} {PACKS[int(srng.integers(len(PACKS)))]}",
                category,
                cost,
                round(cost * float(srng.uniform(1.2, 1.6)), 2),
                lead,
                int(srng.choice([1, 5, 10, 20, 50])),
            )
        )
        truth.append(
            SkuTruth(
                sku,
                pattern,
                category,
                anomaly,
                launch,
                discontinued,
                [w for w in stockouts if w not in anomaly_weeks],
                [w for w in promos if w < weeks],
                anomaly_weeks,
                season_shape=shape,
            )
        )
    products = pd.DataFrame(
        product_rows,
        columns=["sku", "name", "category", "unit_cost", "unit_price", "lead_time_weeks", "min_order_qty"],
    )
    movements = pd.concat(movement_rows, ignore_index=True)
    dirty: list[dict] = []
    if dirty_rows and len(movements) > 100:
        movements, dirty = _add_dirty_rows(rng, movements, end_ts)
    return DemoCatalogue(products, movements, truth, dirty, start, end_ts, seed, holdout)


def _add_dirty_rows(
    rng: np.random.Generator, movements: pd.DataFrame, end: pd.Timestamp
) -> tuple[pd.DataFrame, list[dict]]:
    """A handful of the errors real extracts carry, for the validation layer to quarantine."""
    picks = movements.sample(n=4, random_state=int(rng.integers(1 << 31)))
    bad = []
    neg = picks.iloc[[0]].assign(qty_sold=-5.0)
    bad.append({"kind": "negative_quantity", **neg.iloc[0].astype(str).to_dict()})
    unknown = picks.iloc[[1]].assign(sku="SKU-UNKNOWN")
    bad.append({"kind": "unknown_sku", **unknown.iloc[0].astype(str).to_dict()})
    dup = picks.iloc[[2]]
    bad.append({"kind": "duplicate_day", **dup.iloc[0].astype(str).to_dict()})
    future = picks.iloc[[3]].assign(date=(end + pd.DateOffset(years=40)).date())
    bad.append({"kind": "future_date", **future.iloc[0].astype(str).to_dict()})
    out = pd.concat([movements, neg, unknown, dup, future], ignore_index=True)
    return out, bad
