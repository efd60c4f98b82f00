"""The zoo on Spark gives the pandas path's forecasts, and the data layer reads a source into Spark.

One local Spark session (``local[2]``, four shuffle partitions, no UI) serves the module. On a
seeded 24-series demo panel, ``SparkZoo`` and ``ModelZoo`` run the same members (five statsforecast
ones and the global XGBoost) and must give the same long frame: columns, dtypes, interval columns and
values to 1e-12. The statsforecast members run as one ``StatsForecast`` call per partition of whole
series (the pandas path's code on each); XGBoost is fitted on the driver and
its prediction is mapped over partitions, so equality there is "the mapped prediction equals the driver's".

Skipped when ``java`` is not on PATH (CI=true turns the skip into a failure: tests/support/ci_guard.py).
"""

from __future__ import annotations

import logging
import shutil

import pandas as pd
import pytest

from training.data.demo import generate_catalogue
from training.data.weekly import to_weekly_demand

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SKUS, WEEKS, SEED, H = 24, 110, 11, 8
LOCAL = ["Naive2", "SES", "Theta", "TSB", "CrostonSBA"]
METHODS = [*LOCAL, "XGBoost"]
PARAMS = {"XGBoost": {"n_estimators": 20}}  # a small booster: the test is about where it runs
CUTOFF = "2026-11-22"


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        pytest.skip("the Spark engine needs a Java runtime (17+) on PATH: `java` not found")
    from training.distributed.session import spark_session

    session = spark_session("local[2]", shuffle_partitions=4, app_name="stockml-tests")
    yield session
    session.stop()
    # py4j says goodbye at INFO from a finaliser, after pytest has closed the captured streams
    logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="module")
def catalogue():
    return generate_catalogue(SKUS, WEEKS, seed=SEED, dirty_rows=False)


@pytest.fixture(scope="module")
def demand(catalogue):
    return to_weekly_demand(catalogue.movements)


@pytest.fixture(scope="module")
def results(spark, demand):
    """Forecast (with intervals) and a two-window backtest, on pandas and on Spark."""
    from training.distributed.spark_engine import SparkZoo
    from training.forecasting.zoo import ModelZoo

    out = {}
    for engine, zoo in (
        ("pandas", ModelZoo(METHODS, n_jobs=1, params=PARAMS)),
        ("spark", SparkZoo(METHODS, n_jobs=1, params=PARAMS, spark=spark)),
    ):
        out[engine] = {
            "forecast": zoo.forecast(demand, H),
            "backtest": zoo.cross_validation(demand, H, n_windows=2),
        }
    return out


def _same(spark_frame: pd.DataFrame, pandas_frame: pd.DataFrame, methods: list[str]) -> None:
    keys = ["method", "unique_id", *(["cutoff"] if "cutoff" in pandas_frame else []), "ds"]

    def tidy(f: pd.DataFrame) -> pd.DataFrame:
        return f[f["method"].isin(methods)].sort_values(keys).reset_index(drop=True)

    a, b = tidy(spark_frame), tidy(pandas_frame)
    assert len(b) == len(methods) * SKUS * H * (2 if "cutoff" in b else 1)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["forecast", "backtest"])
def test_local_members_on_spark_give_the_pandas_forecasts(results, kind):
    assert list(results["spark"][kind].dtypes) == list(results["pandas"][kind].dtypes)
    _same(results["spark"][kind], results["pandas"][kind], LOCAL)
    if kind == "forecast":  # native intervals came through (Theta has them)
        assert results["spark"][kind].query("method == 'Theta'")[["lo80", "hi95"]].notna().all().all()


@pytest.mark.parametrize("kind", ["forecast", "backtest"])
def test_global_xgboost_mapped_prediction_equals_the_driver_prediction(results, kind):
    _same(results["spark"][kind], results["pandas"][kind], ["XGBoost"])


def test_a_spark_frame_in_gives_a_spark_frame_of_the_contract_out(spark, demand, results):
    from training.distributed.frames import demand_frame, to_pandas
    from training.distributed.spark_engine import SparkZoo

    out = SparkZoo(["SES", "XGBoost"], n_jobs=1, params=PARAMS, spark=spark).forecast(demand_frame(spark, demand), H)
    assert out.columns == ["unique_id", "ds", "method", "yhat", "lo80", "hi80", "lo95", "hi95"]
    assert dict(out.dtypes)["ds"] == "timestamp_ntz"
    _same(to_pandas(out), results["pandas"]["forecast"], ["SES", "XGBoost"])


def test_predict_on_a_subset_with_fitted_members_matches_the_pandas_path(spark, demand):
    """What the forecast step does: fit on the whole catalogue, then each method forecasts the SKUs that chose it."""
    from training.distributed.spark_engine import SparkZoo
    from training.forecasting.zoo import ModelZoo

    some = demand[demand["unique_id"].isin(demand["unique_id"].unique()[::3])]
    pandas_zoo = ModelZoo(["Theta", "XGBoost"], n_jobs=1, params=PARAMS, horizon=H).fit(demand)
    spark_zoo = SparkZoo(["Theta", "XGBoost"], n_jobs=1, params=PARAMS, horizon=H, spark=spark).fit(demand)
    for method in ("Theta", "XGBoost"):
        got = spark_zoo.predict(H, panel=some, methods=[method])
        expected = pandas_zoo.predict(H, panel=some, methods=[method])
        keys = ["unique_id", "ds"]
        pd.testing.assert_frame_equal(
            got.sort_values(keys, ignore_index=True), expected.sort_values(keys, ignore_index=True), rtol=1e-12
        )


def test_the_source_reaches_spark_as_the_weekly_demand_contract(spark, catalogue, tmp_path):
    """SQLite source → chunks through the provider hook → parquet parts → weekly demand on Spark."""
    from stockml.connections import get_hook
    from training.data.source import SourceQueries
    from training.data.spark_source import movement_chunks, read_demand_parquet, stage_parquet, weekly_demand
    from training.data.store import write_source_tables
    from training.distributed.frames import to_pandas

    hook = get_hook(str(tmp_path / "source.db"))
    engine = hook.get_sqlalchemy_engine()
    write_source_tables(engine, catalogue.products, catalogue.movements)
    engine.dispose()
    folder = stage_parquet(movement_chunks(hook, SourceQueries.default(), chunksize=5_000), tmp_path / "movements")
    assert len(list(folder.glob("part-*.parquet"))) > 1  # it really came in chunks
    movements = spark.read.parquet(str(folder))
    expected = to_weekly_demand(catalogue.movements, pd.Timestamp(CUTOFF))
    got = to_pandas(weekly_demand(movements, pd.Timestamp(CUTOFF)))
    order = ["unique_id", "ds"]
    pd.testing.assert_frame_equal(got.sort_values(order, ignore_index=True), expected)

    expected.to_parquet(tmp_path / "demand.parquet", index=False)
    back = to_pandas(read_demand_parquet(spark, tmp_path / "demand.parquet"))
    pd.testing.assert_frame_equal(back.sort_values(order, ignore_index=True), expected)


def test_the_engine_setting_gives_the_backtest_a_spark_zoo(spark, demand, tmp_path):
    """``STOCKML_ENGINE=spark``: the backtest step's zoo is a SparkZoo, and ``backtest`` scores it unchanged."""
    from stockml.settings import Settings
    from stockml.steps.backtest import engine_session, make_zoo
    from training.distributed.spark_engine import SparkZoo
    from training.forecasting.backtest import backtest

    pandas_settings = Settings(home=tmp_path, methods=["SES", "XGBoost"])
    with engine_session(pandas_settings) as none:
        assert none is None
    s = Settings(home=tmp_path, engine="spark", methods=["SES", "XGBoost"], n_jobs=1)
    zoo = make_zoo(s, PARAMS, spark=spark)
    assert isinstance(zoo, SparkZoo)
    got = backtest(demand, zoo, h=H, n_windows=2).errors
    expected = backtest(demand, make_zoo(pandas_settings.model_copy(update={"n_jobs": 1}), PARAMS), h=H, n_windows=2)
    order = ["method", "unique_id", "cutoff"]
    pd.testing.assert_frame_equal(
        got.sort_values(order, ignore_index=True), expected.errors.sort_values(order, ignore_index=True), rtol=1e-12
    )
