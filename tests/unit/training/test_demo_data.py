"""The demo catalogue: deterministic, realistic mix, ground truth kept out of the source."""

import json

import pandas as pd

from training.data.demo import generate_catalogue, load_truth
from training.data.source import MOVEMENT_COLUMNS, PRODUCT_COLUMNS


def test_same_seed_same_catalogue_other_seed_differs():
    a, b, c = (generate_catalogue(60, 104, s) for s in (5, 5, 6))
    pd.testing.assert_frame_equal(a.movements, b.movements)
    pd.testing.assert_frame_equal(a.products, b.products)
    assert not a.movements["qty_sold"].equals(c.movements["qty_sold"])


def test_catalogue_looks_like_a_distributor(tmp_path):
    cat = generate_catalogue(400, 156, 42)
    truth = cat.truth_frame()
    slow = truth["pattern"].isin(["intermittent", "lumpy"]).mean()
    assert 0.4 <= slow <= 0.6, "about half the SKUs should be intermittent or lumpy"
    assert set(truth["pattern"]) == {"smooth", "erratic", "intermittent", "lumpy"}
    assert (truth["launch_week"] > 0).sum() > 10, "some products launch late"
    assert truth["discontinued_week"].notna().sum() > 5, "some products are discontinued"
    assert truth["stockout_weeks"].map(len).sum() > 0, "stock-outs censor sales"
    assert truth["promo_weeks"].map(len).sum() > 0
    assert truth["anomaly"].notna().sum() >= 10
    assert cat.products["lead_time_weeks"].nunique() > 3
    assert (cat.products["unit_price"] > cat.products["unit_cost"]).all()
    assert list(cat.products.columns) == PRODUCT_COLUMNS
    assert list(cat.movements.columns) == MOVEMENT_COLUMNS
    # Ground truth goes to its own file, never into the source tables.
    assert "pattern" not in cat.products.columns and "anomaly" not in cat.movements.columns
    path = tmp_path / "truth.json"
    cat.write_truth(path)
    assert load_truth(path)["pattern"].equals(truth["pattern"])
    assert {d["kind"] for d in json.loads(path.read_text())["dirty_rows"]} == {
        "negative_quantity",
        "unknown_sku",
        "duplicate_day",
        "future_date",
    }
    # Crop seasonality: fungicide sales peak in the southern summer, not in winter.
    fung = truth[truth["category"] == "Fungicides"].index
    m = cat.movements[cat.movements["sku"].isin(fung)]
    month = pd.to_datetime(m["date"]).dt.month
    assert m[month.isin([11, 12, 1])]["qty_sold"].sum() > 1.5 * m[month.isin([5, 6, 7])]["qty_sold"].sum()
