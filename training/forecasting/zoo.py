"""The model zoo: many forecasters, one contract, one long frame out.

``ModelZoo`` holds members of every kind (statistical, global ML, and whatever a plugin adds)
behind the one :mod:`forecaster contract <training.forecasting.contract>` and reads only their
declared capabilities:

- ``fit(panel)`` fits every member and keeps them in ``fitted_``; ``predict(h, level, panel)``
  forecasts with them (a global member applies what it learnt to ``panel``; a local member is
  estimated on it); ``forecast(panel, h)`` is the two in one; ``cross_validation`` runs the
  honest rolling-origin backtest, each member refitted on the data before every origin as its
  refit policy says;
- statistical members are batched into one vectorised, parallel ``StatsForecast`` call (the
  zoo's one optimisation; it changes no forecast), so the whole statistical zoo makes one pass
  over the data and scales out through statsforecast's Spark/Dask back-ends;
- members that take external regressors (``Capabilities.exogenous``) get them, and only they:
  the weekly regressor table ``regressors`` (``unique_id, ds, unit_price, on_promotion``, which
  may run past the history with planned values) is joined onto their panel, and ``predict``
  passes it to them as ``future`` (values missing over the horizon are the last known ones:
  :func:`~training.forecasting.contract.fill_future`). Every other member, the statsforecast
  batch included, sees ``unique_id, ds, y`` exactly as before;
- ``save``/``load`` write the fitted state of the members that carry it (global ones) in their
  libraries' own formats, with a manifest of members, parameters and versions.

Nothing happens in ``__init__`` but checking parameters (scikit-learn's rule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Self

import pandas as pd

from training.forecasting.contract import LEVELS, Forecaster, Setup, core_panel, with_regressors
from training.forecasting.methods import method_registry, resolve_methods
from training.forecasting.statistical import StatsForecastMember, batched_statsforecast, tidy

BOUNDS = [f"{b}{lv}" for lv in LEVELS for b in ("lo", "hi")]


@dataclass
class ModelZoo:
    """Forecast many series with many methods.

    ``clip_negative`` floors forecasts and bounds at zero (demand cannot be negative); the M4
    benchmark turns it off. ``params`` overrides the hyper-parameters of the methods that have
    them, e.g. ``{"TSB": {"alpha_d": 0.1, "alpha_p": 0.05}}`` (tuned by ``training.automl.tune_zoo``).
    ``horizon`` is what members with a trained horizon (direct multi-step models) are built for;
    ``forecast`` and ``cross_validation`` set it from their ``h``. ``regressors`` is the weekly
    regressor table for members that take them (None: no regressors; a panel's own extra columns
    are used as well).
    """

    methods: list[str] | None = None
    season_length: int = 52
    freq: str | int = "W-MON"
    n_jobs: int = -1
    clip_negative: bool = True
    params: dict[str, dict] = field(default_factory=dict)
    horizon: int = 13
    regressors: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    fitted_: dict[str, Forecaster] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.methods = resolve_methods(self.methods)
        registry = method_registry()
        for name, kwargs in self.params.items():
            accepted = registry[resolve_methods([name])[0]].params
            unknown = sorted(set(kwargs) - set(accepted))
            if unknown:
                raise ValueError(f"{name} takes no parameter(s) {unknown}; tunable: {list(accepted)}")

    # ------------------------------------------------------------------ members

    def setup(self, horizon: int | None = None) -> Setup:
        return Setup(self.season_length, horizon or self.horizon, self.freq)

    def member(self, name: str, horizon: int | None = None) -> Forecaster:
        """A new, unfitted member ``name`` with this zoo's settings and its tuned parameters."""
        member = method_registry()[name].member(self.setup(horizon), **self.params.get(name, {}))
        if isinstance(member, StatsForecastMember):
            member.n_jobs = self.n_jobs
        return member

    def capabilities(self, name: str):
        return self.member(name).capabilities

    # ------------------------------------------------------------------ fit / predict

    def fit(self, panel: pd.DataFrame) -> Self:
        """Fit every member on ``panel``; the fitted members are kept in ``fitted_``."""
        self.fitted_ = {}
        for name in self.methods:
            member = self.member(name)
            self.fitted_[name] = member.fit(self._panel_for(member, panel))
        return self

    def _panel_for(self, member: Forecaster, panel: pd.DataFrame | None) -> pd.DataFrame | None:
        """What ``member`` is given: with the regressors when it takes them, ``unique_id, ds, y`` otherwise."""
        if panel is None or not member.capabilities.exogenous:
            return core_panel(panel)
        return with_regressors(panel, self.regressors)

    def predict(
        self,
        h: int,
        level: Sequence[int] = LEVELS,
        panel: pd.DataFrame | None = None,
        methods: list[str] | None = None,
        n_jobs: int | None = None,
        future: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecasts of the fitted members: unique_id, ds, method, yhat, lo80, hi80, lo95, hi95.

        ``panel`` is the history to forecast from (default: each member's fitted one); ``methods``
        limits the members asked (default: all); ``n_jobs`` overrides the zoo's worker count for
        this call only (a served model is shared between requests, so it is not changed in place).
        ``future`` (``unique_id, ds, <regressors>``) gives members with regressors their values over
        the horizon (default: the zoo's ``regressors``; missing values are the last known ones).
        """
        names = list(methods or self.methods)
        missing = [n for n in names if n not in self.fitted_]
        if missing:
            raise RuntimeError(f"ModelZoo.predict: {missing} not fitted; call fit first")
        members = [self.fitted_[n] for n in names]
        batch = [m for m in members if isinstance(m, StatsForecastMember)]
        parts = []
        if batch:
            data = core_panel(panel) if panel is not None else batch[0].panel_
            sf = batched_statsforecast(batch, self.freq, self.n_jobs if n_jobs is None else n_jobs)
            wide = sf.forecast(df=data, h=h, level=list(level) or None)
            parts += tidy(wide, [m.alias for m in batch], ["unique_id", "ds"], level)
        for m in members:
            if m in batch:
                continue
            if m.capabilities.exogenous:
                given = future if future is not None else self.regressors
                fc = m.predict(h, level, panel=self._panel_for(m, panel), future=given)
            else:
                fc = m.predict(h, level, panel=core_panel(panel))
            parts.append(fc.assign(method=m.alias))
        return self._finish(parts, ["unique_id", "ds"], level)

    def forecast(self, demand: pd.DataFrame, h: int, intervals: bool = True) -> pd.DataFrame:
        """Fit on ``demand`` and forecast ``h`` steps from its end (members with a trained horizon learn ``h``)."""
        self.horizon = h
        return self.fit(demand).predict(h, LEVELS if intervals else ())

    def cross_validation(
        self,
        demand: pd.DataFrame,
        h: int,
        n_windows: int,
        step_size: int | None = None,
        intervals: bool = False,
        progress: Callable[[int, int], None] | None = None,
        chunks: int = 1,
    ) -> pd.DataFrame:
        """Rolling-origin forecasts: unique_id, ds, cutoff, y, method, yhat, bounds.

        Per-series members may run in ``chunks`` of SKUs (to report ``progress(done, total)``); a
        global member always learns from the whole ``demand`` (a chunk would see a fraction of it).
        Members with regressors see the regressors' values over each origin's horizon: honest for
        planned prices and promotions, which are known ahead (see ``Forecaster.cross_validation``).
        """
        self.horizon = h
        level = LEVELS if intervals else ()
        step = step_size or h
        members = [self.member(n, h) for n in self.methods]
        batch = [m for m in members if isinstance(m, StatsForecastMember)]
        full, demand = demand, core_panel(demand)
        ids = demand["unique_id"].unique()
        n = max(1, min(chunks, len(ids) // 50 or 1)) if batch else 0
        jobs: list[Callable[[], list[pd.DataFrame]]] = []
        for i in range(n):
            part = demand[demand["unique_id"].isin(ids[i::n])] if n > 1 else demand

            def run_batch(part: pd.DataFrame = part) -> list[pd.DataFrame]:
                sf = batched_statsforecast(batch, self.freq, self.n_jobs)
                wide = sf.cross_validation(df=part, h=h, n_windows=n_windows, step_size=step, level=list(level) or None)
                return tidy(wide, [m.alias for m in batch], ["unique_id", "ds", "cutoff", "y"], level)

            jobs.append(run_batch)
        for m in members:
            if m not in batch:
                data = self._panel_for(m, full)
                jobs.append(
                    lambda m=m, data=data: [m.cross_validation(data, h, n_windows, step, level).assign(method=m.alias)]
                )
        parts: list[pd.DataFrame] = []
        for i, job in enumerate(jobs):
            if progress:
                progress(i, len(jobs))
            parts += job()
        if progress:
            progress(len(jobs), len(jobs))
        return self._finish(parts, ["unique_id", "ds", "cutoff", "y"], level)

    def _finish(self, parts: list[pd.DataFrame], keys: list[str], level: Sequence[int]) -> pd.DataFrame:
        """One long frame: keys, method, yhat, then lo/hi per level (NaN where a member has none)."""
        cols = [*keys, "method", "yhat"] + [f"{b}{lv}" for lv in (level or LEVELS) for b in ("lo", "hi")]
        first = parts[0]
        frames = []
        for p in parts:
            p = p.reindex(columns=cols)
            frames.append(p.astype({c: first[c].dtype for c in keys if c in first and c in p}))
        out = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        if self.clip_negative:
            present = ["yhat"] + [c for c in BOUNDS if c in out]
            out[present] = out[present].clip(lower=0)
        return out

    # ------------------------------------------------------------------ saved state

    def save(self, folder: Path) -> list[dict]:
        """Write the state of fitted members that carry it; return the manifest entry of every member."""
        entries = []
        for name in self.methods:
            member = self.fitted_.get(name) or self.member(name)
            caps = member.capabilities
            entry = {
                "method": name,
                "class": f"{type(member).__module__}:{type(member).__qualname__}",
                **dict(_provenance(type(member).__module__)),
                "params": self.params.get(name, {}),
                "capabilities": {**caps.__dict__, "carries_state": caps.carries_state},
                "state": None,
            }
            if caps.carries_state and name in self.fitted_:
                sub = folder / name
                entry["state"] = {"path": name, **member.save_state(sub)}
            entries.append(entry)
        return entries

    @classmethod
    def load(cls, folder: Path, entries: list[dict], **settings: object) -> ModelZoo:
        """The zoo of a saved model: members rebuilt from the registry, carried state read back."""
        registry = method_registry()
        unknown = [e["method"] for e in entries if e["method"] not in registry]
        if unknown:
            raise ValueError(
                f"the saved model needs forecaster(s) {unknown}, which are not installed here; "
                f"install the package that provides them (registered: {list(registry)})"
            )
        params = {e["method"]: e.get("params") or {} for e in entries if e.get("params")}
        zoo = cls([e["method"] for e in entries], params=params, **settings)
        for e in entries:
            member = zoo.member(e["method"])
            if e.get("state"):
                member.load_state(folder / e["state"]["path"], e["state"])
            zoo.fitted_[e["method"]] = member
        return zoo


@cache
def _distributions() -> dict[str, list[str]]:
    return packages_distributions()


@cache
def _provenance(module: str) -> dict:
    """The distribution that provides ``module`` and its version (what the manifest records).

    Cached, as is the map behind it: ``packages_distributions`` reads every installed distribution's
    file list (about 2 s here; profiled at 70 s of a 40-SKU pipeline run before the caches).
    """
    top = module.split(".")[0]
    dists = _distributions().get(top) or ["stockml"]
    try:
        return {"package": dists[0], "package_version": version(dists[0])}
    except PackageNotFoundError:
        return {"package": dists[0], "package_version": "unknown"}


def member_library_versions() -> dict[str, str]:
    """Versions of the libraries the built-in members run on (recorded beside the members)."""
    out = {}
    for lib in ("statsforecast", "xgboost-cpu", "xgboost"):
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            continue
    return out
