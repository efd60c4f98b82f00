"""The model zoo on Spark: the same members, the same long contract, the work spread over a cluster.

What runs where (the zoo's members say it through their capabilities, never through their kind):

- **statsforecast members** (local, per series) run as one batch, one ``StatsForecast`` call per
  partition of whole series (:mod:`training.distributed.statsforecast_spark`: ``mapInPandas`` after a
  hash repartition on ``unique_id``), each running the very code of the pandas path, so forecasts and
  backtests are the pandas path's;
- **global members** (XGBoost, ...) learn across every series, which one partition cannot see: they are
  fitted once on the driver (from the collected panel, at every backtest origin their refit policy
  asks for), then broadcast and their prediction is mapped over partitions that hold whole series
  (``mapInPandas`` after a hash repartition on ``unique_id``): the part that grows with the catalogue
  is spread, the fit is not;
- **other local members** (fitted per series, not statsforecast) are fitted and forecast inside each
  partition, which is exact because each series stands alone.

Members that take regressors are not run here yet (``NotImplementedError``): the regressor table would
have to travel beside the demand frame.

``SparkZoo`` is a :class:`~training.forecasting.zoo.ModelZoo`: given a pandas frame, ``forecast`` and
``cross_validation`` return the pandas path's frame (so ``backtest(demand, SparkZoo(...))`` works
unchanged); given a Spark frame, they return a Spark frame of the same contract, left distributed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pandas as pd
from pyspark import Broadcast
from pyspark.sql import DataFrame, SparkSession

from training.distributed import frames
from training.distributed.statsforecast_spark import cross_validation_long, forecast_long
from training.forecasting.contract import LEVELS, Capabilities, Forecaster
from training.forecasting.statistical import StatsForecastMember
from training.forecasting.zoo import ModelZoo

PartFn = Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]


class Frozen(Forecaster):
    """A fitted member that a backtest must not refit: the driver fitted it for this origin already."""

    capabilities = Capabilities(fits=False, scope="global")

    def __init__(self, member: Forecaster) -> None:
        self.member, self.alias, self.freq = member, member.alias, member.freq

    def fit(self, panel: pd.DataFrame) -> Frozen:
        return self

    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame:
        return self.member.predict(h, level, panel=panel)


def drop_last(panel: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each series of ``panel`` without its last ``k`` values (the history before a backtest origin)."""
    if k <= 0:
        return panel
    ordered = panel.sort_values(["unique_id", "ds"], kind="stable")
    groups = ordered.groupby("unique_id", sort=False, observed=True)
    keep = groups.cumcount() < groups["y"].transform("size") - k
    return ordered[keep.to_numpy()].reset_index(drop=True)


def shippable(member: Forecaster) -> Forecaster:
    """A copy of ``member`` without the history it keeps for a default ``predict`` (it would be broadcast
    with the model, and the mapped prediction always passes each partition's own history)."""
    light = copy.copy(member)
    for name, value in list(vars(light).items()):
        if isinstance(value, pd.DataFrame):
            setattr(light, name, None)
    return light


def _mapped(run: Callable[[pd.DataFrame], pd.DataFrame], alias: str, columns: list[str]) -> PartFn:
    """A ``mapInPandas`` function: ``run`` on each partition's whole series, in the long contract."""

    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        panel = frames.whole(batches)
        if panel.empty:
            return
        out = run(panel).assign(method=alias)
        yield out.reindex(columns=columns)

    return apply


@dataclass
class SparkZoo(ModelZoo):
    """A :class:`ModelZoo` whose forecasts and backtests run on Spark (see the module docstring).

    ``spark`` is the session (default: the active one). ``partitions`` is how many partitions hold the
    series for the mapped members (default: the session's ``spark.sql.shuffle.partitions``).
    """

    spark: SparkSession | None = field(default=None, repr=False, compare=False)
    partitions: int | None = None

    # ------------------------------------------------------------------ entry points

    def forecast(self, demand: pd.DataFrame | DataFrame, h: int, intervals: bool = True) -> pd.DataFrame | DataFrame:
        """Fit on ``demand`` and forecast ``h`` steps from its end; a pandas frame in gives one out."""
        self.horizon = h
        level = LEVELS if intervals else ()
        sdf, local = self._input(demand)
        parts = [(lambda m=m: self._forecast_part(m, sdf, h, level)) for m in self._members(h)]
        return self._result(parts, frames.FORECAST_KEYS, level, local, None)

    def predict(
        self,
        h: int,
        level: Sequence[int] = LEVELS,
        panel: pd.DataFrame | DataFrame | None = None,
        methods: list[str] | None = None,
        n_jobs: int | None = None,
        future: pd.DataFrame | None = None,
    ) -> pd.DataFrame | DataFrame:
        """Forecasts of the fitted members from ``panel`` (pandas or Spark), on Spark; see ``ModelZoo.predict``.

        ``fit`` is the pandas path's (a global member learns on the driver in any case); without
        ``panel`` every member forecasts from what it was fitted on, as in the pandas path.
        """
        if panel is None:
            return super().predict(h, level, None, methods, n_jobs, future)
        names = list(methods or self.methods)
        missing = [n for n in names if n not in self.fitted_]
        if missing:
            raise RuntimeError(f"SparkZoo.predict: {missing} not fitted; call fit first")
        sdf, local = self._input(panel)
        groups = self._grouped([self.fitted_[n] for n in names])
        parts = [(lambda m=m: self._forecast_part(m, sdf, h, level, fit=False)) for m in groups]
        return self._result(parts, frames.FORECAST_KEYS, level, local, None)

    def cross_validation(
        self,
        demand: pd.DataFrame | DataFrame,
        h: int,
        n_windows: int,
        step_size: int | None = None,
        intervals: bool = False,
        progress: Callable[[int, int], None] | None = None,
        chunks: int = 1,
    ) -> pd.DataFrame | DataFrame:
        """Rolling-origin forecasts as the pandas path makes them (``chunks`` is ignored: Spark partitions)."""
        self.horizon = h
        level = LEVELS if intervals else ()
        step = step_size or h
        sdf, local = self._input(demand)
        parts = [(lambda m=m: self._backtest_part(m, sdf, h, n_windows, step, level)) for m in self._members(h)]
        return self._result(parts, frames.BACKTEST_KEYS, level, local, progress)

    # ------------------------------------------------------------------ plumbing

    def _session(self) -> SparkSession:
        spark = self.spark or SparkSession.getActiveSession()
        if spark is None:
            raise RuntimeError("SparkZoo needs a Spark session: pass spark=... or start one first")
        return spark

    def _input(self, demand: pd.DataFrame | DataFrame) -> tuple[DataFrame, bool]:
        if isinstance(demand, pd.DataFrame):
            return frames.demand_frame(self._session(), demand), True
        return frames.as_demand(demand), False

    def _members(self, h: int) -> list[Forecaster | list[StatsForecastMember]]:
        """New members of every method, grouped as :meth:`_grouped` says."""
        return self._grouped([self.member(n, h) for n in self.methods])

    @staticmethod
    def _grouped(members: list[Forecaster]) -> list[Forecaster | list[StatsForecastMember]]:
        """The statsforecast members as one batch (one pass over the data), then every other member."""
        exogenous = [m.alias for m in members if m.capabilities.exogenous]
        if exogenous:
            raise NotImplementedError(f"the Spark engine does not pass regressors yet; run {exogenous} on pandas")
        batch = [m for m in members if isinstance(m, StatsForecastMember)]
        return ([batch] if batch else []) + [m for m in members if m not in batch]

    def _result(
        self,
        parts: list[Callable[[], list[DataFrame]]],
        keys: list[str],
        level: Sequence[int],
        local: bool,
        progress: Callable[[int, int], None] | None,
    ) -> pd.DataFrame | DataFrame:
        """Spark in: one lazy Spark frame. pandas in: each part collected (so ``progress`` means
        something) and finished by the pandas path's own ``_finish``."""
        if not local:
            return frames.finish([p for make in parts for p in make()], keys, level, self.clip_negative)
        collected = []
        for i, make in enumerate(parts):
            if progress:
                progress(i, len(parts))
            collected += [frames.to_pandas(p) for p in make()]
        if progress:
            progress(len(parts), len(parts))
        return self._finish(collected, keys, level)

    def _by_series(self, sdf: DataFrame) -> DataFrame:
        """Every series whole in one partition, in time order (what a mapped member needs)."""
        n = self.partitions or int(self._session().conf.get("spark.sql.shuffle.partitions"))
        return sdf.repartition(n, "unique_id").sortWithinPartitions("unique_id", "ds")

    def _map(self, sdf: DataFrame, run: Callable[[pd.DataFrame], pd.DataFrame], alias: str, keys: list[str],
             level: Sequence[int]) -> DataFrame:  # fmt: skip
        schema = frames.long_schema(keys, level)
        return self._by_series(sdf).mapInPandas(_mapped(run, alias, schema.names), schema)

    # ------------------------------------------------------------------ one member (or the batch)

    def _forecast_part(
        self, m: Forecaster | list, sdf: DataFrame, h: int, level: Sequence[int], fit: bool = True
    ) -> list[DataFrame]:
        """One member's (or the batch's) forecast from the end of ``sdf``; ``fit=False``: a global member
        applies what it learnt already (``predict``)."""
        keys = frames.FORECAST_KEYS
        if isinstance(m, list):
            return [forecast_long(m, self.freq, self._by_series(sdf), h, level)]
        if m.capabilities.scope == "global":
            if fit:
                self.fitted_[m.alias] = m.fit(frames.to_pandas(sdf)) if m.capabilities.fits else m
            bc = self._session().sparkContext.broadcast(shippable(m))
            return [self._map(sdf, lambda p, bc=bc: bc.value.predict(h, level, panel=p), m.alias, keys, level)]
        local = shippable(m)  # in predict, a fitted member: its history stays on the driver
        return [self._map(sdf, lambda p: local.fit(p).predict(h, level), m.alias, keys, level)]

    def _backtest_part(
        self, m: Forecaster | list, sdf: DataFrame, h: int, n_windows: int, step: int, level: Sequence[int]
    ) -> list[DataFrame]:
        keys = frames.BACKTEST_KEYS
        if isinstance(m, list):
            return [cross_validation_long(m, self.freq, self._by_series(sdf), h, n_windows, step, level)]
        if m.capabilities.scope != "global":

            def per_series(p: pd.DataFrame, m: Forecaster = m) -> pd.DataFrame:
                return m.cross_validation(p, h, n_windows, step, level)

            return [self._map(sdf, per_series, m.alias, keys, level)]
        history = frames.to_pandas(sdf) if m.capabilities.fits else None
        parts = []
        for w in range(n_windows):
            back = step * (n_windows - 1 - w)  # values after this window's horizon, to each series' end
            if m.capabilities.refits_at(w):
                m.fit(drop_last(history, back + h))
            bc = self._session().sparkContext.broadcast(shippable(m))

            def origin(p: pd.DataFrame, bc: Broadcast = bc, back: int = back) -> pd.DataFrame:
                # this window's origin is the last one of the history without its last `back` values
                return Frozen(bc.value).cross_validation(drop_last(p, back), h, 1, step, level)

            parts.append(self._map(sdf, origin, m.alias, keys, level))
        return parts
