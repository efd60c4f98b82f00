"""The method registry: every forecaster the zoo can run, by name.

Adding a member is one module (a :class:`~training.forecasting.contract.Forecaster`) plus one
:class:`MethodSpec` here. A separately installed package adds members without touching this
code by declaring an entry point in the group ``stockml.forecasters`` that points at a
``MethodSpec`` (or a list of them), for example in its ``pyproject.toml``::

    [project.entry-points."stockml.forecasters"]
    moving_average = "my_package.members:SPEC"

The registry is read when first asked for (:func:`method_registry`), never at import.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points

from statsforecast.models import (
    ADIDA,
    IMAPA,
    TSB,
    AutoARIMA,
    AutoETS,
    AutoTheta,
    CrostonOptimized,
    CrostonSBA,
    Holt,
    Naive,
    SeasonalNaive,
    SimpleExponentialSmoothingOptimized,
    Theta,
)

from training.forecasting import deep
from training.forecasting.contract import Capabilities, Forecaster, Setup
from training.forecasting.global_xgb import GlobalXGBoost
from training.forecasting.prophet import NeuralProphetMember
from training.forecasting.statistical import PointOnly, SeasonallyAdjusted, StatsForecastMember

ENTRY_POINT_GROUP = "stockml.forecasters"
log = logging.getLogger("stockml.forecasting")


@dataclass(frozen=True)
class MethodSpec:
    """A registered member: ``build(setup, **params)`` returns an unfitted :class:`Forecaster`.

    ``family`` groups methods in reports ("baseline", "smoothing", "arima", "intermittent",
    "global", or a plugin's own); ``params`` names the hyper-parameters ``build`` takes as keywords
    (what AutoML may tune and ``ModelZoo(params=...)`` may set).
    """

    name: str
    build: Callable[..., Forecaster]
    family: str
    params: tuple[str, ...] = ()
    defaults: Mapping[str, object] = field(default_factory=dict)  # default values of ``params``
    # In the default set (what a zoo runs when no methods are named)? Costly members (deep,
    # foundation) are registered but opt-in: ``STOCKML_METHODS`` or ``ModelZoo(methods=[...])``.
    in_default: bool = True
    # Why the member cannot run on this machine (e.g. weights not present), or None when it can; asked
    # at run time, never at import. Unavailable members are dropped from a backtest with a warning.
    unavailable: Callable[[], str | None] | None = None

    def member(self, setup: Setup | None = None, **params: object) -> Forecaster:
        member = self.build(setup or Setup(), **params)
        member.alias = self.name
        return member

    @property
    def capabilities(self) -> Capabilities:
        return self.member().capabilities


def _sa(base, m: int):
    return SeasonallyAdjusted(base, m, "sa") if m > 1 else base


def _stat(name: str, build: Callable, intervals: bool, family: str, params: tuple[str, ...] = ()) -> MethodSpec:
    """A statsforecast model as a member; ``build(m, **params)`` makes the statsforecast model."""

    def member(setup: Setup, **kw: object) -> StatsForecastMember:
        return StatsForecastMember(name, lambda: build(setup.season_length, **kw), intervals, setup)

    sig = inspect.signature(build).parameters
    return MethodSpec(name, member, family, params, {p: sig[p].default for p in params})


def _auto_long_season(model_cls):
    # ETS supports seasonal periods up to 24 and seasonal ARIMA with m = 52 takes minutes per series:
    # past 24 the seasonal part is removed by decomposition instead (Hyndman's advice; M4's protocol).
    return lambda m: _sa(model_cls(season_length=1), m) if m > 24 else model_cls(season_length=m)


XGB_PARAMS = (
    "lags", "max_origins", "n_estimators", "max_depth", "learning_rate", "subsample", "colsample_bytree",
    "multi_strategy", "max_bin", "n_jobs",
)  # fmt: skip

TIMESFM_PARAMS = ("context", "batch_size", "flip_invariance")


def _timesfm(setup: Setup, **kw: object) -> Forecaster:
    from training.forecasting.foundation import TimesFM  # timesfm and torch load only when it forecasts

    return TimesFM(freq=setup.freq, **kw)


def _timesfm_unavailable() -> str | None:
    from training.forecasting.foundation import checkpoint_status

    status = checkpoint_status()
    return None if status.available else status.reason


BUILT_IN: tuple[MethodSpec, ...] = (
    _stat("Naive", lambda m: Naive(), True, "baseline"),
    _stat("Naive2", lambda m: _sa(Naive(), m), True, "baseline"),
    _stat("SeasonalNaive", lambda m: SeasonalNaive(season_length=m), True, "baseline"),
    _stat("SES", lambda m: _sa(PointOnly(SimpleExponentialSmoothingOptimized()), m), False, "smoothing"),
    _stat("Holt", lambda m: _sa(Holt(), m), True, "smoothing"),
    _stat("Damped", lambda m: _sa(AutoETS(model="AAN", damped=True), m), True, "smoothing"),
    _stat("Theta", lambda m: Theta(season_length=m), True, "smoothing"),
    _stat("AutoTheta", lambda m: AutoTheta(season_length=m), True, "smoothing"),
    _stat("AutoETS", _auto_long_season(AutoETS), True, "smoothing"),
    _stat("AutoARIMA", _auto_long_season(AutoARIMA), True, "arima"),
    _stat("CrostonOptimized", lambda m: PointOnly(CrostonOptimized()), False, "intermittent"),
    _stat("CrostonSBA", lambda m: PointOnly(CrostonSBA()), False, "intermittent"),
    _stat(
        "TSB",
        lambda m, alpha_d=0.2, alpha_p=0.2: PointOnly(TSB(alpha_d=alpha_d, alpha_p=alpha_p)),
        False,
        "intermittent",
        ("alpha_d", "alpha_p"),
    ),
    _stat("ADIDA", lambda m: PointOnly(ADIDA()), False, "intermittent"),
    _stat("IMAPA", lambda m: PointOnly(IMAPA()), False, "intermittent"),
    MethodSpec(
        "XGBoost",
        lambda setup, **kw: GlobalXGBoost(horizon=setup.horizon, freq=setup.freq, **kw),
        "global",
        XGB_PARAMS,
        {k: v for k, v in GlobalXGBoost().params().items() if k in XGB_PARAMS},
    ),
    MethodSpec(
        "TimesFM",
        _timesfm,
        "foundation",
        TIMESFM_PARAMS,
        {"context": 512, "batch_size": 64, "flip_invariance": True},
        in_default=False,
        unavailable=_timesfm_unavailable,
    ),
)
NEURALPROPHET_PARAMS = (
    "epochs", "learning_rate", "n_changepoints", "yearly_seasonality", "batch_size", "seed", "regressors",
)  # fmt: skip
BUILT_IN += (
    # Opt-in (about a second per series and fit on two cores): strongly seasonal products with promotions.
    MethodSpec(
        "NeuralProphet",
        lambda setup, **kw: NeuralProphetMember(freq=setup.freq, **kw),
        "seasonal",
        NEURALPROPHET_PARAMS,
        {k: v for k, v in NeuralProphetMember().params().items() if k in NEURALPROPHET_PARAMS},
        in_default=False,
    ),
    # Deep global members (neuralforecast; torch is imported only when one fits): opt-in, costly.
    *(
        MethodSpec(
            kind,
            deep.build(kind),
            "deep",
            deep.COMMON_PARAMS + deep.KIND_PARAMS[kind],
            deep.defaults(kind),
            in_default=False,
        )
        for kind in deep.KINDS
    ),
)
BUILT_IN_NAMES = tuple(s.name for s in BUILT_IN)


def _plugin_specs() -> Iterable[MethodSpec]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must not take the platform down: say which and go on
            log.warning("forecaster plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        specs = loaded() if callable(loaded) and not isinstance(loaded, MethodSpec) else loaded
        for spec in [specs] if isinstance(specs, MethodSpec) else list(specs):
            if not isinstance(spec, MethodSpec):
                log.warning("forecaster plugin %s gave %r, not a MethodSpec; ignored", ep.name, spec)
                continue
            yield spec


@cache
def method_registry() -> dict[str, MethodSpec]:
    """Built-in members, then those of installed plugins (a plugin cannot replace a built-in name)."""
    registry = {s.name: s for s in BUILT_IN}
    for spec in _plugin_specs():
        if spec.name in registry:
            log.warning("forecaster plugin member %r clashes with an existing one; ignored", spec.name)
            continue
        registry[spec.name] = spec
    return registry


def default_methods() -> tuple[str, ...]:
    """The default set: registered methods (built-ins and installed plugins' members) not marked opt-in."""
    return tuple(name for name, spec in method_registry().items() if spec.in_default)


def resolve_methods(names: list[str] | tuple[str, ...] | None) -> list[str]:
    registry = method_registry()
    names = list(names or default_methods())
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(registry)}")
    return names


def unavailable_methods(names: Iterable[str]) -> dict[str, str]:
    """Of the registered ``names``, those that cannot run here, with the reason (e.g. TimesFM without weights)."""
    registry = method_registry()
    out = {}
    for name in names:
        spec = registry.get(name)
        reason = spec.unavailable() if spec is not None and spec.unavailable is not None else None
        if reason:
            out[name] = reason
    return out


def drop_unavailable(names: list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``names`` without the members that cannot run here, each dropped with a logged warning (None stays None:
    the default set). Raises when nothing is left."""
    if not names:
        return None
    missing = unavailable_methods(names)
    for name, reason in missing.items():
        log.warning("method %s left out: %s", name, reason)
    kept = [n for n in names if n not in missing]
    if not kept:
        raise ValueError(f"none of the requested methods can run here: {missing}")
    return kept
