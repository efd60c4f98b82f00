"""The demo catalogue: deterministic, realistic mix, ground truth kept out of the source."""

import json

import pandas as pd

from training.data.demo import SEASON_SHAPES, generate_catalogue, load_truth
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
    # Crop seasonality, by planted yearly shape: the main (spring) season sells in the southern spring
    # (Sep-Nov), the other season in autumn (Mar-May), "double" in both, "none" the same all year.
    assert set(truth["season_shape"]) == set(SEASON_SHAPES)
    assert load_truth(path)["season_shape"].equals(truth["season_shape"])
    m = cat.movements.merge(truth[["season_shape"]], left_on="sku", right_index=True)
    by_month = m.pivot_table(
        index=pd.to_datetime(m["date"]).dt.month, columns="season_shape", values="qty_sold", aggfunc="sum"
    )
    share = by_month / by_month.mean()  # 1 = an average month
    spring, autumn = [9, 10, 11], [3, 4, 5]
    assert share.loc[spring, "spring"].sum() > 2 * share.loc[autumn, "spring"].sum()
    assert share.loc[autumn, "autumn"].sum() > 2 * share.loc[spring, "autumn"].sum()
    assert share.loc[[4, 10], "double"].min() > 1.5 * share.loc[[1, 7], "double"].max()
    assert share["none"].between(0.85, 1.15).all()
