"""Related products: order-line validation, reading an optional table, demo order lines, rule mining.

"A planted rule" is the unordered SKU pair {antecedent, consequent} the demo generator tied
together; a mined rule ``a -> b`` or ``b -> a`` recovers it (``score_rules``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from training.classification.related import RelatedConfig, frequent_itemsets, related_products, score_rules
from training.data.demo import generate_catalogue
from training.data.demo_orders import generate_order_lines
from training.data.order_lines import read_order_lines, validate_order_lines, write_order_lines
from training.data.source import SourceContractError

TODAY = pd.Timestamp("2026-11-22")


class SqliteDfHook:
    """What SqliteHook offers the reader: ``conn_type`` and ``get_df``."""

    conn_type = "sqlite"

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get_df(self, sql: str, parameters=None, **kwargs) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(sa.text(sql), conn)


def _lines() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "order_id": ["O1", "O1", "O2", None, "O3", "O4", "O5", "O6", " "],
            "date": ["2026-11-02"] * 5 + ["2026-13-40", "2099-01-01", "2026-11-03", "2026-11-03"],
            "customer_id": ["C1"] * 9,
            "sku": ["A", "B", "A", "A", "GHOST", "A", "B", "B", "A"],
            "qty": [2, 1, "x", 1, 1, 1, 1, 0, 3],
        }
    )


def test_order_lines_quarantined_with_reasons_never_dropped():
    res = validate_order_lines(_lines(), {"A", "B"}, TODAY)
    assert res.lines["order_id"].tolist() == ["O1", "O1"] and res.lines["qty"].tolist() == [2.0, 1.0]
    reasons = res.quarantine["reason"].value_counts().to_dict()
    assert reasons == {
        "missing order_id": 2,
        "unknown sku": 1,
        "date is not a date": 1,
        "future date": 1,
        "qty is not a number": 1,
        "non-positive qty": 1,
    }
    assert len(res.lines) + len(res.quarantine) == len(_lines())  # every row accounted for
    assert set(res.quarantine["source_table"]) == {"order_lines"}
    assert '"GHOST"' in res.quarantine.loc[res.quarantine["reason"] == "unknown sku", "payload"].iloc[0]
    assert res.report == {"order_lines_read": 9, "order_lines_valid": 2, "order_lines_quarantined": 7, "orders": 1}


def test_an_absent_table_is_normal_and_a_present_one_is_read(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 's.db'}")
    hook = SqliteDfHook(engine)
    assert read_order_lines(hook) is None
    write_order_lines(engine, _lines().dropna().assign(date="2026-11-02"))
    got = read_order_lines(hook)
    assert got is not None and list(got.columns) == ["order_id", "date", "customer_id", "sku", "qty"]
    assert len(got) == 8
    # A configured query says the source has order lines: its errors are reported, not taken for absence.
    with pytest.raises(SourceContractError, match="STOCKML_ORDER_LINES_QUERY"):
        read_order_lines(hook, query="SELECT order_id, sku FROM order_lines")
    with pytest.raises(Exception, match="no such table"):
        read_order_lines(hook, query="SELECT * FROM vw_missing")


@pytest.fixture(scope="module")
def demo():
    cat = generate_catalogue(300, 156, seed=42)
    lines, truth = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end)
    return cat, lines, truth


def test_demo_order_lines_are_seeded_and_follow_the_sales(demo):
    cat, lines, truth = demo
    again, truth2 = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end)
    pd.testing.assert_frame_equal(lines, again)
    assert truth == truth2
    assert set(lines["sku"]) <= set(cat.products["sku"])
    dates = pd.to_datetime(lines["date"])
    assert dates.min() >= cat.start and dates.max() <= cat.end
    assert lines.groupby("order_id")["sku"].nunique().mean() > 2  # several SKUs per order
    assert len(truth["planted_rules"]) == 10
    cats = {(r["antecedent_category"], r["consequent_category"]) for r in truth["planted_rules"]}
    assert ("Fungicides", "Adjuvants") in cats and ("Herbicides", "Adjuvants") in cats
    # Weekly quantities: the sales of each (sku, week), plus only the few lines planting added.
    week = lambda d: pd.to_datetime(d).dt.to_period("W-SUN")  # noqa: E731
    sales = cat.movements[cat.movements["sku"].isin(set(cat.products["sku"])) & (cat.movements["qty_sold"] > 0)]
    sales = sales[pd.to_datetime(sales["date"]) <= cat.end].drop_duplicates(["sku", "date"])
    want = sales.groupby([sales["sku"], week(sales["date"])])["qty_sold"].sum()
    got = lines.groupby([lines["sku"], week(lines["date"])])["qty"].sum()
    excess = got.sub(want, fill_value=0)
    assert (excess >= 0).all() and excess.sum() <= 3 * truth["lines_added"]
    assert truth["lines_added"] < 0.02 * len(lines)


@pytest.mark.parametrize("seed", [42, 7])
def test_planted_rules_recovered_90_90(seed, demo):
    if seed == 42:
        _, lines, truth = demo
    else:
        cat = generate_catalogue(300, 156, seed=seed)
        lines, truth = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end)
    found = related_products(lines, RelatedConfig())
    score = score_rules(found, truth["planted_rules"])
    assert score["recall"] >= 0.9 and score["precision"] >= 0.9, score
    assert found["lift"].min() >= 3.0 and found["confidence"].min() >= 0.2


def test_cooccurrence_counts_give_what_mlxtend_fpgrowth_and_apriori_give():
    rng = np.random.default_rng(0)
    rows = []
    for o in range(600):
        skus = set(rng.choice(12, size=int(rng.integers(1, 5)), replace=False).tolist())
        if 0 in skus and rng.random() < 0.7:
            skus.add(11)
        rows += [{"order_id": f"O{o}", "sku": f"S{s:02d}"} for s in sorted(skus)]
    lines = pd.DataFrame(rows)
    config = RelatedConfig(min_support=0.02, min_confidence=0.1, min_lift=1.0)
    ours = related_products(lines, config)
    assert len(ours) > 10 and {("S00", "S11"), ("S11", "S00")} <= set(
        zip(ours["sku"], ours["related_sku"], strict=True)
    )
    for method in ("fpgrowth", "apriori"):
        pd.testing.assert_frame_equal(ours, related_products(lines, config, method=method))
    from training.classification.related import basket_matrix

    basket = basket_matrix(lines)
    a = frequent_itemsets(basket, 0.02).set_index("itemsets")["support"].sort_index()
    b = frequent_itemsets(basket, 0.02, "fpgrowth").set_index("itemsets")["support"].sort_index()
    pd.testing.assert_series_equal(a.sort_values(), b.loc[a.index].sort_values(), check_exact=False)


def test_the_demo_dirty_order_lines_are_quarantined(demo):
    cat, _, _ = demo
    lines, truth = generate_order_lines(cat.products, cat.movements, cat.seed, cat.end, dirty_rows=True)
    res = validate_order_lines(lines, set(cat.products["sku"]), TODAY)
    kinds = {"unknown sku": "unknown_sku", "non-positive qty": "non_positive_qty"}
    kinds["missing order_id"] = "missing_order_id"
    assert {kinds[r] for r in res.quarantine["reason"]} == {d["kind"] for d in truth["dirty_rows"]}
    assert len(res.quarantine) == 3 and len(res.lines) == len(lines) - 3


def test_no_rules_and_no_lines_give_an_empty_frame():
    assert related_products(pd.DataFrame(columns=["order_id", "sku"])).empty
    lines = pd.DataFrame({"order_id": ["O1", "O2"], "sku": ["A", "B"]})
    out = related_products(lines)
    assert out.empty and list(out.columns) == ["sku", "related_sku", "support", "confidence", "lift"]


class FakeHive:
    """Records statements; knows the tables it was told of or created (column lists from the schema)."""

    conn_type = "hiveserver2"

    def __init__(self, existing: set[str] = frozenset()) -> None:
        self.statements: list[str] = []
        self.existing = set(existing)
        self.log_sql = True

    def run(self, sql, *args, **kwargs):
        for s in [sql] if isinstance(sql, str) else sql:
            self.statements.append(s)
            if s.startswith("CREATE TABLE IF NOT EXISTS"):
                self.existing.add(s.split("`")[1])

    def get_df(self, sql, *args, **kwargs):
        from training.data.output_schema import output_tables

        self.statements.append(sql)
        if sql.startswith("SHOW TABLES"):
            return pd.DataFrame({"tab_name": [t for t in self.existing if f"'{t}'" in sql]})
        if sql.startswith("SHOW COLUMNS"):
            return pd.DataFrame({"field": [c.name for c in output_tables()["stock_related"].columns]})
        if "FROM order_lines" in sql:
            return pd.DataFrame([{"order_id": "O1", "date": "2026-11-02", "customer_id": "C", "sku": "A", "qty": 1}])
        raise AssertionError(f"unexpected query {sql}")


def test_hive_order_lines_absent_or_read_and_stock_related_overwrites_its_partition():
    hive = FakeHive()
    assert read_order_lines(hive) is None
    assert hive.statements == ["SHOW TABLES LIKE 'order_lines'"]  # asked the catalogue, no failed query
    assert len(read_order_lines(FakeHive({"order_lines"}))) == 1
    from training.data.store import OutputKey, write_output

    rules = pd.DataFrame({"sku": ["A"], "related_sku": ["B"], "support": [0.1], "confidence": [0.5], "lift": [4.0]})
    assert write_output(hive, "stock_related", rules, OutputKey("stock_ingest", "2026-11-16"), "r1") == 1
    create = next(s for s in hive.statements if s.startswith("CREATE TABLE IF NOT EXISTS `stock_related`"))
    assert "PARTITIONED BY (`pipeline` STRING, `cutoff_week` STRING)" in create and "`related_sku` STRING" in create
    assert hive.statements[-1].startswith(
        "INSERT OVERWRITE TABLE `stock_related` PARTITION (`pipeline`='stock_ingest', `cutoff_week`='2026-11-16')"
    )
