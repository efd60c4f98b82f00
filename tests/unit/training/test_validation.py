"""Validation quarantines every bad row with its reason; weekly aggregation follows the contract."""

import pandas as pd
import pytest

from training.data.validate import NoValidRowsError, validate
from training.data.weekly import last_complete_week_start, to_weekly_demand

PRODUCTS = pd.DataFrame(
    {
        "sku": ["A", "B", "B", "C"],
        "name": ["a", "b", "b2", "c"],
        "category": ["F"] * 4,
        "unit_cost": [1.0, 2.0, 2.0, "x"],
        "unit_price": [2.0, 3.0, 3.0, 4.0],
        "lead_time_weeks": [1, 2, 2, 1],
        "min_order_qty": [1, 1, 1, 1],
    }
)


def _moves(rows):
    return pd.DataFrame(rows, columns=["sku", "date", "qty_sold", "qty_received", "stock_on_hand"])


def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost():
    moves = _moves(
        [
            ("A", "2026-01-05", 3, 0, 10),
            ("A", "2026-01-05", 4, 0, 9),  # duplicated day
            ("A", "2026-01-06", -1, 0, 9),  # negative
            ("A", "2026-01-07", "abc", 0, 9),  # not a number
            ("Z", "2026-01-07", 1, 0, 9),  # unknown sku
            ("A", "not a date", 1, 0, 9),
            ("A", "2030-01-01", 1, 0, 9),  # future
            ("B", "2026-01-12", 2, 5, None),  # stock may be empty
        ]
    )
    r = validate(PRODUCTS, moves, today=pd.Timestamp("2026-02-01"))
    reasons = r.quarantine["reason"].value_counts().to_dict()
    assert reasons == {
        "duplicated sku": 1,
        "unit_cost is not a number": 1,
        "duplicated (sku, date)": 1,
        "negative qty_sold": 1,
        "qty_sold is not a number": 1,
        "unknown sku": 1,
        "date is not a date": 1,
        "future date": 1,
    }
    assert len(r.movements) + (r.quarantine["source_table"] == "stock_movements").sum() == len(moves)
    assert r.report["quarantined"] == 8 and r.report["movements_valid"] == 2
    assert r.movements.iloc[0]["qty_sold"] == 3  # the first of a duplicated day is kept


def test_no_valid_rows_fails_clearly():
    moves = _moves([("A", "2026-01-05", -3, 0, 1), ("Q", "2026-01-05", 3, 0, 1)])
    with pytest.raises(NoValidRowsError, match="no valid stock movements"):
        validate(PRODUCTS, moves, today=pd.Timestamp("2026-02-01"))


def test_weekly_demand_is_w_mon_and_zero_filled_from_first_sale():
    moves = _moves(
        [
            ("A", "2026-01-07", 2, 0, 1),
            ("A", "2026-01-08", 3, 0, 1),  # week of Mon 2026-01-05
            ("A", "2026-01-26", 4, 0, 1),  # week of 2026-01-26
            ("B", "2026-01-20", 0, 9, 9),
            ("B", "2026-01-21", 1, 0, 8),  # receipt only, then a sale
            ("A", "2026-02-03", 7, 0, 1),  # after the cut-off's last full week
        ]
    )
    d = to_weekly_demand(moves, cutoff=pd.Timestamp("2026-02-04"))
    a = d[d.unique_id == "A"]
    assert list(a["ds"].dt.strftime("%Y-%m-%d")) == ["2026-01-05", "2026-01-12", "2026-01-19", "2026-01-26"]
    assert list(a["y"]) == [5.0, 0.0, 0.0, 4.0]
    assert (d["ds"].dt.weekday == 0).all()
    assert list(d[d.unique_id == "B"]["y"]) == [1.0, 0.0]
    assert last_complete_week_start(pd.Timestamp("2026-02-01")) == pd.Timestamp("2026-01-26")  # a Sunday
    assert last_complete_week_start(pd.Timestamp("2026-02-04")) == pd.Timestamp("2026-01-26")
