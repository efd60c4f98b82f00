"""Validate the source rows; quarantine the invalid ones with a reason, never drop silently.

Rules for stock_movements: unknown SKU, unparseable or future date, non-numeric or negative
quantities, and duplicated (sku, day) rows (the first occurrence is kept, later ones are
quarantined). Products: missing or duplicated SKU, non-numeric or negative cost/price/lead
time. Gaps (long stretches without any movement) are reported, not quarantined: an ERP
only writes a row when something moves, so the weekly aggregation zero-fills them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

QUARANTINE_COLUMNS = ["source_table", "reason", "sku", "date", "payload"]
GAP_WEEKS = 26


class NoValidRowsError(ValueError):
    """The source holds no usable row: nothing downstream can run."""


@dataclass
class ValidationResult:
    products: pd.DataFrame
    movements: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict = field(default_factory=dict)


def _quarantine(df: pd.DataFrame, mask: pd.Series, reason: str, table: str) -> pd.DataFrame:
    bad = df.loc[mask]
    return pd.DataFrame(
        {
            "source_table": table,
            "reason": reason,
            "sku": bad["sku"].astype(str).values if "sku" in bad else None,
            "date": bad["date"].astype(str).values if "date" in bad else None,
            "payload": [json.dumps(r, default=str) for r in bad.to_dict(orient="records")],
        }
    )


def _apply_rules(
    raw: pd.DataFrame, rules: list[tuple[str, pd.Series]], table: str, quarantine: list[pd.DataFrame]
) -> pd.Series:
    """Apply rules in order; a row is quarantined once, under the first rule it breaks."""
    bad = pd.Series(False, index=raw.index)
    for reason, mask in rules:
        mask = mask.fillna(False) & ~bad
        if mask.any():
            quarantine.append(_quarantine(raw, mask, reason, table))
        bad |= mask
    return bad


def _numeric(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce")


def validate_products(products: pd.DataFrame) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    df = products.copy()
    df["sku"] = df["sku"].astype("string").str.strip()
    q: list[pd.DataFrame] = []
    rules: list[tuple[str, pd.Series]] = [("missing sku", df["sku"].isna() | (df["sku"] == ""))]
    for col in ("unit_cost", "unit_price", "lead_time_weeks", "min_order_qty"):
        num = _numeric(df[col])
        rules.append((f"{col} is not a number", num.isna() & df[col].notna()))
        rules.append((f"negative {col}", num < 0))
        df[col] = num
    rules.append(("duplicated sku", df["sku"].duplicated(keep="first") & df["sku"].notna()))
    bad = _apply_rules(products, rules, "products", q)
    return df.loc[~bad].reset_index(drop=True), q


def validate_movements(
    movements: pd.DataFrame, known_skus: set[str], today: pd.Timestamp
) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    df = movements.copy()
    df["sku"] = df["sku"].astype("string").str.strip()
    dates = pd.to_datetime(df["date"], errors="coerce")
    q: list[pd.DataFrame] = []
    rules: list[tuple[str, pd.Series]] = [
        ("unknown sku", ~df["sku"].isin(known_skus)),
        ("date is not a date", dates.isna()),
        ("future date", dates > today),
    ]
    for col in ("qty_sold", "qty_received", "stock_on_hand"):
        num = _numeric(df[col])
        required = col != "stock_on_hand"  # many ERPs leave stock empty on some rows
        missing = num.isna() & (df[col].notna() | required)
        rules.append((f"{col} is not a number", missing))
        rules.append((f"negative {col}", num < 0))
        df[col] = num
    df["date"] = dates.dt.normalize()
    bad = _apply_rules(movements, rules, "stock_movements", q)
    dup = df.duplicated(subset=["sku", "date"], keep="first") & ~bad
    if dup.any():
        q.append(_quarantine(movements, dup, "duplicated (sku, date)", "stock_movements"))
    bad |= dup
    return df.loc[~bad].reset_index(drop=True), q


def find_gaps(movements: pd.DataFrame, weeks: int = GAP_WEEKS) -> list[str]:
    """SKUs with a stretch of more than ``weeks`` weeks without any movement (reported only)."""
    if movements.empty:
        return []
    d = movements.sort_values(["sku", "date"])
    gap_days = d.groupby("sku")["date"].diff().dt.days
    return sorted(d.loc[gap_days > weeks * 7, "sku"].astype(str).unique().tolist())


def validate(products: pd.DataFrame, movements: pd.DataFrame, today: pd.Timestamp | None = None) -> ValidationResult:
    """Split the source into valid rows and quarantined rows, with counts for the run report."""
    today = pd.Timestamp(today or pd.Timestamp.now()).normalize()
    good_products, q1 = validate_products(products)
    good_moves, q2 = validate_movements(movements, set(good_products["sku"].astype(str)), today)
    quarantine = pd.concat(q1 + q2, ignore_index=True) if (q1 or q2) else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    if good_products.empty or good_moves.empty:
        raise NoValidRowsError(
            f"The source has no valid {'products' if good_products.empty else 'stock movements'} "
            f"({len(products)} product rows, {len(movements)} movement rows read, "
            f"{len(quarantine)} quarantined: {quarantine['reason'].value_counts().to_dict()}). "
            "Check the source tables or STOCKML_PRODUCTS_QUERY / STOCKML_MOVEMENTS_QUERY."
        )
    report = {
        "products_read": len(products),
        "movements_read": len(movements),
        "products_valid": len(good_products),
        "movements_valid": len(good_moves),
        "quarantined": len(quarantine),
        "quarantined_by_reason": {str(k): int(v) for k, v in quarantine["reason"].value_counts().items()},
        "skus_with_gaps": len(find_gaps(good_moves)),
        "first_date": str(good_moves["date"].min().date()),
        "last_date": str(good_moves["date"].max().date()),
    }
    good_moves["sku"] = good_moves["sku"].astype(str)
    good_products["sku"] = good_products["sku"].astype(str)
    for col in ("lead_time_weeks", "min_order_qty"):
        good_products[col] = good_products[col].fillna(0).astype(np.int64)
    return ValidationResult(good_products, good_moves, quarantine, report)


# ---------------------------------------------------------------- optional table: price_promotions

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def _as_bool(s: pd.Series) -> pd.Series:
    """Booleans, 0/1 and their usual spellings as True/False; anything else (or empty) as NA."""
    text = s.astype("string").str.strip().str.lower()
    out = pd.Series(pd.NA, index=s.index, dtype="boolean")
    out[text.isin(_TRUE).fillna(False)] = True
    out[text.isin(_FALSE).fillna(False)] = False
    return out


def validate_price_promotions(
    price_promotions: pd.DataFrame, known_skus: set[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(valid rows, quarantined rows, report) of the optional ``price_promotions`` table.

    Quarantined with a reason: unknown SKU, unparseable date, non-numeric or negative
    ``unit_price``, ``on_promotion`` that is not a boolean (true/false, 1/0, yes/no), duplicated
    (sku, date) (the first is kept). Future dates are valid: planned promotions are known ahead.
    An empty ``unit_price`` is kept (a promotion flag without a price): the weekly mean skips it.
    """
    df = price_promotions.copy()
    df["sku"] = df["sku"].astype("string").str.strip()
    dates = pd.to_datetime(df["date"], errors="coerce")
    price = _numeric(df["unit_price"])
    promo = _as_bool(df["on_promotion"])
    q: list[pd.DataFrame] = []
    rules: list[tuple[str, pd.Series]] = [
        ("unknown sku", ~df["sku"].isin(known_skus)),
        ("date is not a date", dates.isna()),
        ("unit_price is not a number", price.isna() & df["unit_price"].notna()),
        ("negative unit_price", price < 0),
        ("on_promotion is not a boolean", promo.isna()),
    ]
    df["date"] = dates.dt.normalize()
    df["unit_price"] = price
    df["on_promotion"] = promo
    bad = _apply_rules(price_promotions, rules, "price_promotions", q)
    dup = df.duplicated(subset=["sku", "date"], keep="first") & ~bad
    if dup.any():
        q.append(_quarantine(price_promotions, dup, "duplicated (sku, date)", "price_promotions"))
    bad |= dup
    good = df.loc[~bad].reset_index(drop=True)
    good["sku"] = good["sku"].astype(str)
    good["on_promotion"] = good["on_promotion"].astype(bool)
    quarantine = pd.concat(q, ignore_index=True) if q else pd.DataFrame(columns=QUARANTINE_COLUMNS)
    report = {
        "price_promotions_read": len(price_promotions),
        "price_promotions_valid": len(good),
        "price_promotions_quarantined": len(quarantine),
    }
    return good, quarantine, report
