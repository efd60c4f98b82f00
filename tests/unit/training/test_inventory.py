"""The weekly inventory contract: on hand at week end, receipts, censored weeks, on the demand's weeks."""

import numpy as np
import pandas as pd

from training.data.demo import generate_catalogue, load_holdout_demand
from training.data.inventory import INVENTORY_COLUMNS, to_weekly_inventory
from training.data.validate import validate
from training.data.weekly import to_weekly_demand

NAN = float("nan")
# (sku, date, qty_sold, qty_received, stock_on_hand); weeks start on Mondays 2026-01-05, -12, -19, -26, 02-02
ROWS = [
    ("A", "2026-01-02", 0, 10, 10),  # Friday before the first sale's week: an opening receipt
    ("A", "2026-01-06", 4, 0, 6),
    ("A", "2026-01-08", 6, 0, 0),  # sold out on Thursday: week 1 censored
    # week 2 (01-12): no rows, the shelf stays empty: censored (ended at 0)
    ("A", "2026-01-19", 0, 20, 20),
    ("A", "2026-01-21", 5, 0, 15),  # week 3: refilled, never empty
    ("A", "2026-01-26", 15, 0, 0),  # week 4: empty on Monday, refilled Tuesday: censored though it ends at 5
    ("A", "2026-01-27", 0, 8, 8),
    ("A", "2026-01-31", 3, 0, 5),
    ("A", "2026-02-02", 2, 0, NAN),  # week 5: no count on the row: the last count (5) stands
    ("A", "2026-02-10", 1, 0, 4),  # after the cut-off: ignored
    ("B", "2026-01-20", 3, 0, NAN),  # never counted: on hand unknown, not censored
    ("B", "2026-02-03", 1, 2, NAN),
]


def _movements(rows=ROWS) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["sku", "date", "qty_sold", "qty_received", "stock_on_hand"])
    return df.assign(date=pd.to_datetime(df["date"]))


def _weekly(movements: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    demand = to_weekly_demand(movements, pd.Timestamp("2026-02-08"))
    return demand, to_weekly_inventory(movements, demand)


def test_hand_computed_weeks():
    _, inv = _weekly(_movements())
    assert list(inv.columns) == INVENTORY_COLUMNS
    a = inv[inv["unique_id"] == "A"].set_index(inv.loc[inv["unique_id"] == "A", "ds"].dt.strftime("%m-%d"))
    assert a.index.tolist() == ["01-05", "01-12", "01-19", "01-26", "02-02"]
    assert a["on_hand"].tolist() == [0.0, 0.0, 15.0, 5.0, 5.0]
    assert a["receipts"].tolist() == [0.0, 0.0, 20.0, 8.0, 0.0]  # the opening receipt is before the first week
    assert a["censored"].tolist() == [True, True, False, True, False]
    b = inv[inv["unique_id"] == "B"]
    assert b["ds"].dt.strftime("%m-%d").tolist() == ["01-19", "01-26", "02-02"]
    assert b["on_hand"].isna().all() and not b["censored"].any()
    assert b["receipts"].tolist() == [0.0, 0.0, 2.0]


def test_same_weeks_as_the_demand_whatever_the_row_order():
    movements = _movements()
    demand, inv = _weekly(movements)
    pd.testing.assert_frame_equal(inv[["unique_id", "ds"]], demand[["unique_id", "ds"]])
    shuffled = movements.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(to_weekly_inventory(shuffled, demand), inv)
    assert inv["censored"].dtype == bool and inv["on_hand"].dtype == float


def test_no_demand_gives_an_empty_frame():
    no_sales = _movements().assign(qty_sold=0)
    empty = to_weekly_inventory(no_sales, to_weekly_demand(no_sales, pd.Timestamp("2026-02-08")))
    assert empty.empty and list(empty.columns) == INVENTORY_COLUMNS


def test_demo_stockouts_are_censored_and_holdout_demand_is_uncensored(tmp_path):
    cat = generate_catalogue(40, 104, 11)
    result = validate(cat.products, cat.movements, today=cat.end)
    demand = to_weekly_demand(result.movements, cat.end)
    inv = to_weekly_inventory(result.movements, demand).set_index(["unique_id", "ds"])
    truth = cat.truth_frame()
    stockouts = {(sku, cat.start + pd.Timedelta(weeks=w)) for sku, ws in truth["stockout_weeks"].items() for w in ws}
    assert len(stockouts) > 20
    censored = set(inv.index[inv["censored"]])
    assert stockouts <= censored, "every week where stock cut the sales is marked censored"
    # the truth leaves anomaly weeks out of its stock-outs; elsewhere few others are marked (stock ending
    # exactly at 0 by selling the last unit, or an empty shelf in a week without demand: the data cannot tell)
    shifted = {(sku, cat.start + pd.Timedelta(weeks=w)) for sku, ws in truth["anomaly_weeks"].items() for w in ws}
    assert len(stockouts) / len(censored - shifted) > 0.85

    path = tmp_path / "truth.json"
    cat.write_truth(path)
    held = load_holdout_demand(path)
    assert held.groupby("unique_id").size().eq(52).all() and held["unique_id"].nunique() == 40
    assert held["ds"].max() == demand["ds"].max()
    plain = truth.index[truth["anomaly"].isna()]  # spikes are sales beyond demand; shifts are not in stockouts
    both = held[held["unique_id"].isin(plain)].merge(demand, on=["unique_id", "ds"], how="left", suffixes=("", "_sold"))
    both["y_sold"] = both["y_sold"].fillna(0.0)  # before a launch the demand frame has no week
    cut = np.array([(u, d) in stockouts for u, d in zip(both["unique_id"], both["ds"], strict=True)])
    assert cut.sum() > 0
    assert (both.loc[cut, "y"] > both.loc[cut, "y_sold"]).all(), "the stock-out weeks lost demand"
    assert np.allclose(both.loc[~cut, "y"], both.loc[~cut, "y_sold"]), "elsewhere demand was sold in full"
