"""The optional price_promotions table: reading (absence is normal), validation, weekly regressors,
the demo's planned promotions, and how the zoo hands regressors to the members that take them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from training.data.demo import generate_catalogue
from training.data.demo_prices import demo_price_promotions, planned_promo_weeks
from training.data.source import SourceQueries, is_missing_table_error, read_price_promotions
from training.data.store import write_source_tables
from training.data.validate import validate_price_promotions
from training.data.weekly import to_weekly_regressors
from training.forecasting.contract import (
    Capabilities,
    Forecaster,
    core_panel,
    fill_future,
    regressor_columns,
    with_regressors,
)
from training.forecasting.methods import MethodSpec, method_registry
from training.forecasting.zoo import ModelZoo


class EngineHook:
    """The ``get_df`` a provider hook has, over a SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get_df(self, sql: str, parameters=None, **kwargs) -> pd.DataFrame:
        with self.engine.connect() as conn:
            return pd.read_sql(sql, conn)


@pytest.fixture(scope="module")
def catalogue():
    return generate_catalogue(20, 104, seed=3, dirty_rows=False)


def test_bad_price_rows_are_quarantined_with_reasons_and_nothing_is_lost():
    raw = pd.DataFrame(
        [
            ("A", "2026-11-02", 10.0, True),
            ("A", "2026-11-03", 9.0, "false"),
            ("A", "2026-11-03", 9.5, False),  # duplicated (sku, date)
            ("Z", "2026-11-02", 10.0, False),  # unknown sku
            ("A", "2026-11-04", -1.0, False),  # negative price
            ("A", "2026-11-05", "cheap", 0),  # not a number
            ("A", "2026-11-06", 10.0, "maybe"),  # not a boolean
            ("A", "not a date", 10.0, 1),
            ("B", "2027-03-01", 7.0, 1),  # planned: a future date is valid
            ("B", "2027-03-02", None, "yes"),  # a flag without a price is kept
        ],
        columns=["sku", "date", "unit_price", "on_promotion"],
    )
    good, quarantine, report = validate_price_promotions(raw, {"A", "B"})
    assert len(good) + len(quarantine) == len(raw)
    assert report == {"price_promotions_read": 10, "price_promotions_valid": 4, "price_promotions_quarantined": 6}
    assert set(quarantine["reason"]) == {
        "duplicated (sku, date)",
        "unknown sku",
        "negative unit_price",
        "unit_price is not a number",
        "on_promotion is not a boolean",
        "date is not a date",
    }
    assert (quarantine["source_table"] == "price_promotions").all()
    assert good["on_promotion"].tolist() == [True, False, True, True]
    assert good["on_promotion"].dtype == bool


def test_weekly_regressors_are_w_mon_mean_price_and_any_day_promotion():
    good = pd.DataFrame(
        {
            "sku": ["A"] * 4,
            "date": pd.to_datetime(["2026-11-02", "2026-11-05", "2026-11-08", "2026-11-09"]),
            "unit_price": [10.0, 8.0, np.nan, 12.0],
            "on_promotion": [False, True, False, False],
        }
    )
    weekly = to_weekly_regressors(good)
    assert weekly.columns.tolist() == ["unique_id", "ds", "unit_price", "on_promotion"]
    assert weekly["ds"].dt.weekday.eq(0).all()
    assert weekly["unit_price"].tolist() == [9.0, 12.0]
    assert weekly["on_promotion"].tolist() == [1.0, 0.0]


def test_a_source_without_the_table_is_normal_and_one_with_it_is_read(tmp_path, catalogue):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'src.db'}")
    hook = EngineHook(engine)
    write_source_tables(engine, catalogue.products, catalogue.movements)
    assert read_price_promotions(hook, SourceQueries.default()) is None
    prices = demo_price_promotions(catalogue)
    write_source_tables(engine, catalogue.products, catalogue.movements, price_promotions=prices)
    read = read_price_promotions(hook, SourceQueries.default())
    assert len(read) == len(prices) and read.columns.tolist() == ["sku", "date", "unit_price", "on_promotion"]
    with pytest.raises(sa.exc.OperationalError):  # a broken query is an error, not an absent table
        read_price_promotions(hook, SourceQueries.default(price_promotions="SELECT nonsense FROM price_promotions"))
    engine.dispose()


@pytest.mark.parametrize(
    "message, missing",
    [
        ("(sqlite3.OperationalError) no such table: price_promotions", True),
        ('(psycopg2.errors.UndefinedTable) relation "s.price_promotions" does not exist', True),
        (
            "FAILED: SemanticException [Error 10001]: Table not found price_promotions",
            True,
        ),
        ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `default`.`price_promotions` cannot be found.", True),
        ('column "unit_price" does not exist', False),
        ("connection refused", False),
    ],
)
def test_missing_table_is_told_from_other_failures(message, missing):
    assert is_missing_table_error(RuntimeError(message)) is missing


def test_demo_writes_planned_promotions_past_the_history(catalogue):
    prices = demo_price_promotions(catalogue, horizon=13)
    dates = pd.to_datetime(prices["date"])
    history_end = catalogue.end
    assert dates.max() == pd.Timestamp(history_end) - pd.Timedelta(days=6) + pd.Timedelta(weeks=13)
    future = prices[dates > history_end]
    assert future["on_promotion"].any(), "some promotions are planned inside the horizon"
    planned = planned_promo_weeks(catalogue, 13)
    assert set(future.loc[future["on_promotion"], "sku"]) == set(planned)
    # Promotions of the history are the generator's uplift weeks, and the price drops on them.
    t = next(t for t in catalogue.truth if t.promo_weeks and t.launch_week == 0)
    rows = prices[prices["sku"] == t.sku].reset_index(drop=True)
    assert set(np.flatnonzero(rows["on_promotion"].to_numpy())) >= set(t.promo_weeks)
    on, off = rows.loc[rows["on_promotion"], "unit_price"], rows.loc[~rows["on_promotion"], "unit_price"]
    assert on.max() < off.min()
    good, quarantine, _ = validate_price_promotions(prices, set(catalogue.products["sku"]))
    assert len(quarantine) == 0 and len(good) == len(prices)


def _panel() -> pd.DataFrame:
    ds = pd.date_range("2026-01-05", periods=6, freq="W-MON")
    return pd.DataFrame({"unique_id": np.repeat(["A", "B"], 6), "ds": np.tile(ds, 2), "y": np.arange(12.0)})


def test_fill_future_takes_planned_values_and_else_the_last_known():
    panel = _panel()
    table = pd.DataFrame(
        {
            "unique_id": ["A", "A", "B"],
            "ds": pd.to_datetime(["2026-02-09", "2026-02-23", "2026-02-09"]),  # A: week 6 and 8; B: week 6
            "unit_price": [5.0, 4.0, 7.0],
            "on_promotion": [0.0, 1.0, 0.0],
        }
    )
    hist = with_regressors(panel, table)
    assert hist["unit_price"].tolist() == [5.0] * 6 + [7.0] * 6  # filled from the nearest known week
    fut = fill_future(hist, 3, "W-MON", table)
    assert fut.columns.tolist() == ["unique_id", "ds", "unit_price", "on_promotion"]
    assert fut["ds"].tolist() == list(pd.date_range("2026-02-16", periods=3, freq="W-MON")) * 2
    a = fut[fut["unique_id"] == "A"]
    assert a["on_promotion"].tolist() == [0.0, 1.0, 0.0] and a["unit_price"].tolist() == [5.0, 4.0, 5.0]
    b = fut[fut["unique_id"] == "B"]
    assert b["unit_price"].tolist() == [7.0] * 3 and b["on_promotion"].tolist() == [0.0] * 3
    # Without a table, the history's own last values carry on.
    assert fill_future(hist, 2, "W-MON")["unit_price"].tolist() == [5.0, 5.0, 7.0, 7.0]
    # Without regressors at all: just the future stamps.
    assert fill_future(panel, 2, "W-MON").columns.tolist() == ["unique_id", "ds"]


def test_members_without_regressors_are_unchanged_by_them():
    rng = np.random.default_rng(0)
    ds = pd.date_range("2024-01-01", periods=80, freq="W-MON")
    panel = pd.DataFrame({"unique_id": np.repeat(["A", "B"], 80), "ds": np.tile(ds, 2), "y": rng.poisson(5, 160) * 1.0})
    table = panel[["unique_id", "ds"]].assign(unit_price=rng.uniform(1, 2, 160), on_promotion=rng.random(160) < 0.2)
    methods = ["Naive", "SES", "TSB", "XGBoost"]
    plain = ModelZoo(methods, n_jobs=1).forecast(panel, 4)
    with_table = ModelZoo(methods, n_jobs=1, regressors=table).forecast(panel, 4)
    pd.testing.assert_frame_equal(plain, with_table)
    wide = with_regressors(panel, table)  # a panel carrying regressor columns is stripped for them too
    pd.testing.assert_frame_equal(ModelZoo(methods, n_jobs=1).forecast(wide, 4), plain)
    cv = ModelZoo(["Naive", "TSB"], n_jobs=1).cross_validation(panel, 4, 2)
    cv_wide = ModelZoo(["Naive", "TSB"], n_jobs=1, regressors=table).cross_validation(wide, 4, 2)
    pd.testing.assert_frame_equal(cv, cv_wide)
    assert core_panel(wide).columns.tolist() == ["unique_id", "ds", "y"]


class PromoEcho(Forecaster):
    """A toy member with regressors: last value, plus 100 in weeks on promotion."""

    capabilities = Capabilities(exogenous=True)

    def fit(self, panel):
        self.seen_, self.panel_ = regressor_columns(panel), panel
        return self

    def predict(self, h, level=(), panel=None, future=None):
        panel = self.panel_ if panel is None else panel
        ahead = fill_future(panel, h, "W-MON", future)
        last = panel.sort_values("ds").groupby("unique_id")["y"].last()
        return ahead.assign(yhat=ahead["unique_id"].map(last) + 100 * ahead["on_promotion"])[
            ["unique_id", "ds", "yhat"]
        ]


def test_the_zoo_gives_regressors_and_the_planned_future_to_members_that_take_them(monkeypatch):
    spec = MethodSpec("PromoEcho", lambda setup, **kw: PromoEcho(), "test")
    monkeypatch.setitem(method_registry(), "PromoEcho", spec)
    panel = _panel()
    table = panel[["unique_id", "ds"]].assign(unit_price=1.0, on_promotion=0.0)
    planned = pd.DataFrame(
        {"unique_id": ["A"], "ds": [pd.Timestamp("2026-02-23")], "unit_price": [1.0], "on_promotion": [1.0]}
    )
    zoo = ModelZoo(["Naive", "PromoEcho"], n_jobs=1, regressors=pd.concat([table, planned])).fit(panel)
    assert zoo.fitted_["PromoEcho"].seen_ == ["unit_price", "on_promotion"]
    fc = zoo.predict(3, ())
    echo = fc[(fc["method"] == "PromoEcho") & (fc["unique_id"] == "A")]
    assert echo["yhat"].tolist() == [5.0, 105.0, 5.0]
    # In a backtest the horizon's (planned) values come from the regressor table at each origin.
    table.loc[(table["unique_id"] == "B") & (table["ds"] == table["ds"].max()), "on_promotion"] = 1.0
    cv = ModelZoo(["PromoEcho"], n_jobs=1, regressors=table).cross_validation(panel, 2, 1)
    assert cv.loc[cv["unique_id"] == "B", "yhat"].tolist() == [9.0, 109.0]
