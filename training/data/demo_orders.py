"""Customer order lines for the demo catalogue, with planted product associations.

The lines come from the catalogue's own sales: each day's ``qty_sold`` of a SKU is split into
one to three customer lines and the day's lines are grouped into orders of a few SKUs each, so
the lines have the catalogue's SKUs, dates, seasons and weekly quantities. Then the planted
associations: for each planted rule ``antecedent -> consequent`` (a fungicide with a mineral
oil or a surfactant, a herbicide with a drift reducer or ammonium sulfate, an insecticide with
a mineral oil or a buffer, a seed treatment with a second seed treatment), a share of the
antecedent's orders (the planted confidence, 0.5-0.85) also get the consequent: a consequent
line of the same week is moved into that order when there is one (its week's total is kept),
otherwise a new line of 1-3 units is added (counted in the truth as ``lines_added``).

Seeded from the catalogue's seed on its own stream: the products and ``stock_movements`` are
not touched, and the same seed gives the same lines. The planted rules go to the ground-truth
JSON (key ``order_lines``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data.order_lines import ORDER_LINE_COLUMNS

# What each category's products are planted with: a consequent category and preferred ingredients.
PAIRINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Fungicides": ("Adjuvants", ("Mineral oil", "Silicone surfactant")),
    "Herbicides": ("Adjuvants", ("Drift reducer", "Ammonium sulfate", "Silicone surfactant")),
    "Insecticides": ("Adjuvants", ("Mineral oil", "Buffer")),
    "Seed treatment": ("Seed treatment", ()),
}
MEAN_ORDER_LINES = 2.5
STREAM = 1_000_003  # the order lines' random stream, apart from the catalogue's


def n_planted_rules(n_skus: int) -> int:
    return int(np.clip(n_skus // 30, 1, 12))


def _split_sales(rng: np.random.Generator, sales: pd.DataFrame) -> pd.DataFrame:
    """Each (sku, day) sale into 1-3 lines whose quantities sum to the day's sale."""
    qty = sales["qty_sold"].to_numpy().astype(np.int64)
    n = np.minimum(qty, rng.integers(1, 4, len(qty)))
    rows = np.repeat(np.arange(len(qty)), n)
    first = np.r_[True, rows[1:] != rows[:-1]]
    base = qty[rows] // n[rows]
    line_qty = base + np.where(first, qty[rows] - base * n[rows], 0)
    out = sales.iloc[rows][["sku", "date"]].reset_index(drop=True)
    out["qty"] = line_qty.astype(float)
    return out


def _group_into_orders(rng: np.random.Generator, lines: pd.DataFrame, n_customers: int) -> pd.DataFrame:
    """Shuffle each day's lines and cut them into orders of about ``MEAN_ORDER_LINES`` lines."""
    lines = lines.assign(_r=rng.random(len(lines))).sort_values(["date", "_r"]).drop(columns="_r")
    lines = lines.reset_index(drop=True)
    new_day = np.r_[True, lines["date"].to_numpy()[1:] != lines["date"].to_numpy()[:-1]]
    new_order = new_day | (rng.random(len(lines)) < 1 / MEAN_ORDER_LINES)
    order_no = np.cumsum(new_order)
    weights = 1.0 / np.arange(1, n_customers + 1) ** 0.8  # a few big customers, many small ones
    customers = rng.choice(n_customers, size=int(order_no[-1]) + 1, p=weights / weights.sum())
    lines["order_no"] = order_no
    lines["customer_id"] = [f"C-{c + 1:04d}" for c in customers[order_no]]
    return lines


def _pick_rules(
    rng: np.random.Generator, products: pd.DataFrame, lines: pd.DataFrame, n_rules: int
) -> list[tuple[str, str, float]]:
    """(antecedent, consequent, confidence): well-selling SKUs, each SKU in one rule at most."""
    sold = lines.groupby("sku")["order_no"].nunique()
    p = products.set_index("sku").assign(orders=sold).fillna({"orders": 0})
    p["ingredient"] = p["name"].str.rsplit(" ", n=2).str[0]
    used: set[str] = set()
    rules: list[tuple[str, str, float]] = []
    cats = list(PAIRINGS)
    for i in range(n_rules * 4):
        if len(rules) == n_rules:
            break
        cat = cats[i % len(cats)]
        then_cat, preferred = PAIRINGS[cat]
        ante = p[(p["category"] == cat) & ~p.index.isin(used)].sort_values("orders", ascending=False)
        if ante.empty:
            continue
        a = str(ante.index[int(rng.integers(min(3, len(ante))))])
        cons = p[(p["category"] == then_cat) & ~p.index.isin(used | {a})]
        cons = cons.sort_values("orders", ascending=False).head(12)
        liked = cons[cons["ingredient"].isin(preferred)]
        cons = liked if not liked.empty else cons
        if cons.empty:
            continue
        b = str(cons.index[int(rng.integers(len(cons)))])
        used |= {a, b}
        rules.append((a, b, round(float(rng.uniform(0.5, 0.85)), 3)))
    return rules


def _plant(
    rng: np.random.Generator, lines: pd.DataFrame, rules: list[tuple[str, str, float]]
) -> tuple[pd.DataFrame, int, int]:
    """Give a share (the confidence) of each antecedent's orders its consequent; returns lines, moved, added."""
    lines = lines.copy()
    lines["week"] = pd.to_datetime(lines["date"]).dt.to_period("W-SUN").astype(str)
    added_rows: list[dict] = []
    moves: list[tuple[int, int]] = []
    order_date = lines.groupby("order_no")["date"].first()
    order_customer = lines.groupby("order_no")["customer_id"].first()
    for a, b, conf in rules:
        a_orders = lines.loc[lines["sku"] == a, "order_no"].unique()
        b_orders = set(lines.loc[lines["sku"] == b, "order_no"])
        chosen = [o for o in a_orders if o not in b_orders and rng.random() < conf]
        # Consequent lines free to move (not already in one of the antecedent's orders), by week.
        a_set = set(a_orders)
        free = lines[(lines["sku"] == b) & ~lines["order_no"].isin(a_set)]
        pools: dict[str, list[int]] = {w: list(idx) for w, idx in free.groupby("week").groups.items()}
        for o in chosen:
            d = order_date[o]
            week = str(pd.Timestamp(d).to_period("W-SUN"))
            pool = pools.get(week)
            if pool:
                moves.append((pool.pop(int(rng.integers(len(pool)))), o))
            else:
                qty = float(rng.integers(1, 4))
                added_rows.append({"sku": b, "date": d, "qty": qty, "order_no": o, "customer_id": order_customer[o]})
    if moves:
        rows, orders = (np.array(v) for v in zip(*moves, strict=True))
        cols = [lines.columns.get_loc(c) for c in ("order_no", "date", "customer_id")]
        lines.iloc[rows, cols[0]] = orders
        lines.iloc[rows, cols[1]] = order_date.loc[orders].to_numpy()
        lines.iloc[rows, cols[2]] = order_customer.loc[orders].to_numpy()
    moved = len(moves)
    if added_rows:
        lines = pd.concat([lines, pd.DataFrame(added_rows)], ignore_index=True)
    return lines.drop(columns="week"), moved, len(added_rows)


def generate_order_lines(
    products: pd.DataFrame,
    movements: pd.DataFrame,
    seed: int,
    end: pd.Timestamp | str,
    n_rules: int | None = None,
    dirty_rows: bool = False,
) -> tuple[pd.DataFrame, dict]:
    """The ``order_lines`` table and its truth (the planted rules, counts, dirty rows)."""
    rng = np.random.default_rng([seed, STREAM])
    end = pd.Timestamp(end)
    known = set(products["sku"].astype(str))
    sales = movements[movements["sku"].isin(known) & (pd.to_numeric(movements["qty_sold"]) > 0)]
    sales = sales[pd.to_datetime(sales["date"]) <= end].drop_duplicates(["sku", "date"])
    sales = sales.sort_values(["date", "sku"]).reset_index(drop=True)
    lines = _group_into_orders(rng, _split_sales(rng, sales), max(50, len(products) // 2))
    rules = _pick_rules(rng, products, lines, n_rules if n_rules is not None else n_planted_rules(len(products)))
    lines, moved, added = _plant(rng, lines, rules)
    lines = lines.sort_values(["date", "order_no", "sku"]).reset_index(drop=True)
    lines["order_id"] = "O-" + lines["order_no"].astype(int).astype(str).str.zfill(7)
    lines["date"] = pd.to_datetime(lines["date"]).dt.date
    out = lines[ORDER_LINE_COLUMNS].copy()
    names = products.set_index("sku")
    planted = [
        {
            "antecedent": a,
            "consequent": b,
            "confidence": conf,
            "antecedent_name": str(names.at[a, "name"]),
            "consequent_name": str(names.at[b, "name"]),
            "antecedent_category": str(names.at[a, "category"]),
            "consequent_category": str(names.at[b, "category"]),
        }
        for a, b, conf in rules
    ]
    dirty: list[dict] = []
    if dirty_rows and len(out) > 10:
        out, dirty = _add_dirty_lines(rng, out)
    truth = {
        "planted_rules": planted,
        "rule_definition": "an unordered SKU pair {antecedent, consequent}; a mined rule either way recovers it",
        "orders": int(out["order_id"].nunique()),
        "lines": len(out),
        "lines_moved": moved,
        "lines_added": added,
        "dirty_rows": dirty,
    }
    return out, truth


def _add_dirty_lines(rng: np.random.Generator, lines: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Three errors for the validation layer: an unknown SKU, a zero quantity, a missing order id."""
    picks = lines.sample(n=3, random_state=int(rng.integers(1 << 31)))
    unknown = picks.iloc[[0]].assign(sku="SKU-UNKNOWN")
    zero = picks.iloc[[1]].assign(qty=0.0)
    no_order = picks.iloc[[2]].assign(order_id=None)
    dirty = [
        {"kind": kind, **row.iloc[0].astype(str).to_dict()}
        for kind, row in (("unknown_sku", unknown), ("non_positive_qty", zero), ("missing_order_id", no_order))
    ]
    return pd.concat([lines, unknown, zero, no_order], ignore_index=True), dirty


def write_demo_orders(
    target: Any, catalogue: Any, schema: str | None, truth_path: Path, dirty_rows: bool = False
) -> dict:
    """Generate the catalogue's order lines, write ``order_lines`` to ``target``, add the truth to the JSON.

    ``catalogue`` is a :class:`training.data.demo.DemoCatalogue`; the ground-truth file must
    have been written already (its ``order_lines`` key is added or replaced). ``dirty_rows`` adds
    three bad lines for the validator; off by default, so the demo's quarantine keeps its four
    deliberately dirty movement rows.
    """
    from training.data.order_lines import write_order_lines

    lines, truth = generate_order_lines(
        catalogue.products, catalogue.movements, catalogue.seed, catalogue.end, dirty_rows=dirty_rows
    )
    write_order_lines(target, lines, schema)
    path = Path(truth_path)
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload["order_lines"] = truth
    path.write_text(json.dumps(payload, indent=1, default=str))
    return truth


def load_planted_rules(path: Path) -> list[dict]:
    """The planted rules of a ground-truth file (empty when it has no order lines)."""
    return json.loads(Path(path).read_text()).get("order_lines", {}).get("planted_rules", [])
