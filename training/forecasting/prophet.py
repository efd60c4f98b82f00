"""NeuralProphet as a zoo member: trend, yearly seasonality and future regressors, per series.

Why it is in the zoo: strongly seasonal products whose sales jump on promotions. NeuralProphet
(a PyTorch Prophet) models a piecewise-linear trend, a yearly Fourier seasonality and additive
*future regressors*; here those are the weekly ``unit_price`` and ``on_promotion`` of the
optional ``price_promotions`` table, whose planned values over the horizon come in ``future``.

Choices, for a machine with two cores:

- **Local** (one small model per series, ``scope="local"``): a global model with per-series
  trend and seasonality would train one network over every series at once, but each epoch then
  passes over the whole catalogue and a serving request for one SKU would still need the
  catalogue's model; a per-series fit is about a second (20 epochs of a few hundred weeks) and
  needs nothing carried, so it keeps no state in the registered model (``carries_state`` is
  False): a served request fits on its own history, as every local member does.
- **Refit every 2 origins** in backtests (``refit="every_k"``): a series fitted at one origin
  forecasts the next origin's horizon from its calendar terms (trend, season, regressors),
  having not seen the weeks in between, which is honest and halves the cost.
  ``predict(panel=...)`` reuses the fitted model of each series it has, and fits the others
  (a loaded member has none: it fits on the request's history).
- **Point forecasts only**: NeuralProphet's quantile regression needs many more epochs than the
  point fit to give usable bounds, so the backtest's empirical intervals are used instead.
- ``learning_rate`` is explicit (NeuralProphet 0.9's learning-rate finder fails under torch 2.13),
  every fit is seeded (``neuralprophet.set_random_seed``) so forecasts repeat, and its logging
  and progress bars are silenced.

Regressors: ``on_promotion`` by default; ``unit_price`` as well with ``regressors=("unit_price",
"on_promotion")``. On 100 demo SKUs (``python -m bench.neuralprophet_demo``) adding ``unit_price``
made the backtest worse (mean MASE 1.21 against 1.12 with the promotion flag alone): within a
SKU the price moves with the promotions and a yearly list-price rise, so it only duplicates the
flag and the trend. A regressor enters a series' model only when it varies in that series'
history (a constant price has no effect to learn). Yearly seasonality is used from two years of
history on (Prophet's own rule: with less, a yearly curve cannot be told from the trend). Series
shorter than ``min_weeks`` (or constant) get their mean. neuralprophet (and torch) are imported
inside the member, so importing the registry stays light.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Self

import numpy as np
import pandas as pd

from training.forecasting.contract import (
    Capabilities,
    Forecaster,
    fill_future,
    future_ds,
    panel_arrays,
    regressor_columns,
)

REGRESSORS = ("unit_price", "on_promotion")  # what it can take
DEFAULT_REGRESSORS = ("on_promotion",)
YEAR = 52  # weeks  # what it takes unless told: see the module docstring
_QUIET = (
    "NP",
    "NP.plotly",
    "NP.plotting",
    "NP.forecaster",
    "NP.df_utils",
    "NP.data",
    "NP.config",
    "pytorch_lightning",
    "lightning",
    "lightning.pytorch",
    "lightning_fabric",
    "py.warnings",
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence NeuralProphet, Lightning and their warnings for the duration of a fit or predict."""
    levels = {name: logging.getLogger(name).level for name in _QUIET}
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


class NeuralProphetMember(Forecaster):
    """One NeuralProphet per series, with yearly seasonality and the price/promotion regressors."""

    capabilities = Capabilities(scope="local", refit="every_k", refit_every=2, exogenous=True)

    def __init__(
        self,
        epochs: int = 20,
        learning_rate: float = 0.1,
        n_changepoints: int = 5,
        yearly_seasonality: int | bool = 6,
        batch_size: int = 64,
        seed: int = 0,
        min_weeks: int = 8,
        regressors: tuple[str, ...] = DEFAULT_REGRESSORS,
        freq: str | int = "W-MON",
    ) -> None:
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.n_changepoints = n_changepoints
        self.yearly_seasonality = yearly_seasonality
        self.batch_size = batch_size
        self.seed = seed
        self.min_weeks = min_weeks
        self.regressors = tuple(regressors)
        self.freq = freq

    def params(self) -> dict:
        keys = ("epochs", "learning_rate", "n_changepoints", "yearly_seasonality", "batch_size", "seed", "min_weeks",
                "regressors")  # fmt: skip
        return {k: getattr(self, k) for k in keys}

    # ------------------------------------------------------------------ fit

    def fit(self, panel: pd.DataFrame) -> Self:
        """Fit one model per series of ``panel`` (regressor columns, when present, are used)."""
        self.models_: dict = {}
        self.means_: dict = {}
        self.regressors_: dict = {}
        self.panel_ = panel
        self._fit_series(panel)
        return self

    def _fit_series(self, panel: pd.DataFrame) -> None:
        cols = [c for c in regressor_columns(panel) if c in self.regressors and c in REGRESSORS]
        for uid, g in panel.sort_values(["unique_id", "ds"], kind="stable").groupby("unique_id", sort=False):
            y = g["y"].to_numpy(dtype=float)
            if len(y) < self.min_weeks or np.nanstd(y) == 0:
                self.means_[uid] = float(np.nanmean(y)) if len(y) else 0.0
                continue
            used = [c for c in cols if g[c].notna().all() and g[c].nunique() > 1]
            df = g[["ds", "y", *used]].reset_index(drop=True).astype({c: float for c in used})
            self.models_[uid] = self._fit_one(df, used)
            self.regressors_[uid] = used

    def _fit_one(self, df: pd.DataFrame, regressors: list[str]):
        with _quiet():
            from neuralprophet import NeuralProphet, set_log_level, set_random_seed

            set_log_level("CRITICAL")
            set_random_seed(self.seed)
            model = NeuralProphet(
                growth="linear",
                n_changepoints=self.n_changepoints,
                # Prophet's own rule: a yearly curve needs two years of history to be told from trend.
                yearly_seasonality=self.yearly_seasonality if len(df) >= 2 * YEAR else False,
                weekly_seasonality=False,
                daily_seasonality=False,
                epochs=self.epochs,
                learning_rate=self.learning_rate,
                batch_size=self.batch_size,
                trainer_config={"enable_progress_bar": False, "logger": False, "enable_checkpointing": False},
            )
            for name in regressors:
                model.add_future_regressor(name)
            model.fit(df, freq=self.freq, progress=None, minimal=True, checkpointing=False)
        return model

    # ------------------------------------------------------------------ predict

    def predict(
        self,
        h: int,
        level: Sequence[int] = (),
        panel: pd.DataFrame | None = None,
        future: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Point forecasts ``h`` weeks past the end of ``panel`` (default: the fitted history).

        ``future`` holds the regressors over the horizon (planned promotions); missing values
        are each series' last known ones. Bounds are NaN (no native intervals).
        """
        if panel is None:
            panel = getattr(self, "panel_", None)
            if panel is None:
                raise RuntimeError("NeuralProphetMember.predict: no panel and nothing fitted")
        if not hasattr(self, "models_"):
            self.models_, self.means_, self.regressors_ = {}, {}, {}
        known = set(self.models_) | set(self.means_)
        new = panel[~panel["unique_id"].isin(known)]
        if len(new):
            self._fit_series(new)
        ahead = fill_future(panel, h, self.freq, future)
        ids, _, stamps = panel_arrays(panel)
        yhat = np.empty((len(ids), h))
        for i, (uid, ds) in enumerate(zip(ids, stamps, strict=True)):
            if uid in self.means_:
                yhat[i] = self.means_[uid]
                continue
            used = self.regressors_[uid]
            steps = future_ds(np.array([ds[-1]]), h, self.freq)
            rows = ahead[ahead["unique_id"] == uid].set_index("ds").reindex(steps)
            df = pd.DataFrame({"ds": steps, "y": np.nan})
            for c in used:
                df[c] = rows[c].to_numpy(dtype=float) if c in rows else np.nan
            hist = panel[panel["unique_id"] == uid].sort_values("ds")[["ds", "y", *used]]
            model = self.models_[uid]
            df = df.fillna({c: float(hist[c].iloc[-1]) for c in used})
            with _quiet():
                fc = model.predict(pd.concat([hist, df], ignore_index=True).astype({c: float for c in used}))
            yhat[i] = fc["yhat1"].to_numpy(dtype=float)[-h:]
        out = pd.DataFrame(
            {"unique_id": np.repeat(ids, h), "ds": future_ds(np.array([s[-1] for s in stamps]), h, self.freq)}
        )
        out["yhat"] = yhat.ravel()
        for lv in level:
            out[f"lo{lv}"] = np.nan
            out[f"hi{lv}"] = np.nan
        return out
