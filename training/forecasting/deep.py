"""Deep global members: LSTM, N-HiTS and N-BEATS through Nixtla's ``neuralforecast``.

All three learn one network across every series of the panel (``Capabilities(scope="global")``), on the
same ``unique_id, ds, y`` frame as the rest of the zoo:

- **NHITS** (Challu et al., 2023): stacks of MLPs on multi-rate pooled inputs whose outputs are
  interpolated over the horizon; direct multi-step, fast on CPU, the stronger of the two on M4 Weekly
  (bench/RESULTS.md);
- **NBEATS** (Oreshkin et al., 2020): stacks of MLP blocks, each emitting a backcast (subtracted
  from its input) and a forecast on a basis (identity, polynomial trend or Fourier seasonality);
  the method of the M4 paper's best pure-deep result, trained here per panel like NHITS;
- **LSTM**: a 2-layer LSTM encoder over the last ``input_size`` values and an MLP decoder for the
  horizon (neuralforecast's non-recurrent, direct mode).

Choices shared by all (all are plain parameters, tunable through ``ModelZoo(params=...)``):

- per-window scaling inside the network (``scaler_type``, "robust" by default: median / IQR-style,
  which copes with zero weeks and intermittent demand); neuralforecast's ``TemporalNorm`` computes
  the statistics of each input window at fit *and* at predict time, so it holds no fitted state
  (checked: it registers no parameter nor buffer for "robust"/"standard"; only "revin" would, and
  those live in the ``state_dict`` anyway);
- early stopping on the last ``val_size`` steps of each training series (``early_stop_patience_steps``
  validation checks without improvement, one every ``val_check_steps`` training steps);
- ``MQLoss`` at the median and the 80 % / 95 % levels by default, so the member has native intervals
  (``loss="mae"`` gives point forecasts only);
- series shorter than ``input_size`` are left-padded (``start_padding_enabled``);
- seeded (``random_seed``) and repeatable on CPU; the GPU is used when torch sees one;
- Lightning kept quiet: no logger, no checkpoints, no progress bar, its root dir a temporary one.

Fitted state (:meth:`NeuralMember.save_state`) is the network's ``state_dict`` (``weights.pt``, read
back with ``torch.load(weights_only=True)``) plus a JSON config; never a pickle, never a Lightning
checkpoint. ``torch`` and ``neuralforecast`` are imported only when a member fits or loads.

``ensemble`` (a list of per-network overrides, or a dict of lists for their product) makes the member
the median of several networks, trained one after the other (:mod:`training.forecasting.deep_ensemble`);
its state is one ``state_dict`` per network (``weights_00.pt``, ...) under the same JSON config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from training.forecasting import deep_ensemble
from training.forecasting.contract import LEVELS, Capabilities, Forecaster, future_ds

KINDS = ("LSTM", "NHITS", "NBEATS")
COMMON_PARAMS = (
    "input_size", "max_steps", "learning_rate", "batch_size", "windows_batch_size", "scaler_type", "val_size",
    "early_stop_patience_steps", "val_check_steps", "random_seed", "loss", "refit_every", "train_tail", "transform",
    "ensemble",
)  # fmt: skip
KIND_PARAMS = {
    "LSTM": ("encoder_hidden_size", "encoder_n_layers", "decoder_hidden_size"),
    "NHITS": ("mlp_width", "n_blocks"),
    "NBEATS": ("stack_types", "n_blocks", "mlp_width", "n_harmonics", "n_basis"),
}
WEIGHTS = "weights.pt"
LOSSES = ("mqloss", "mae", "mase", "smape")
STACK_TYPES = {"identity", "trend", "seasonality"}


@contextlib.contextmanager
def _quiet():
    """Lightning and neuralforecast talk a lot at INFO and through warnings; keep the logs readable."""
    names = ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "neuralforecast")
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lv in zip(loggers, before, strict=True):
            lg.setLevel(lv)


def library_versions() -> dict[str, str]:
    out = {}
    for lib in ("neuralforecast", "torch", "pytorch-lightning"):
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            continue
    return out


@dataclass
class NeuralMember(Forecaster):
    """A neuralforecast model (``kind`` "LSTM", "NHITS" or "NBEATS") behind the zoo's forecaster contract."""

    STATE_FORMAT: ClassVar[int] = 1
    ENSEMBLE_FORMAT: ClassVar[int] = 2  # weights: a list of files, one per network of ``ensemble``

    kind: str = "NHITS"
    alias: str = ""
    horizon: int = 13
    freq: str | int = "W-MON"
    input_size: int = 52
    max_steps: int = 300
    learning_rate: float = 1e-3
    batch_size: int = 64
    windows_batch_size: int = 256
    scaler_type: str = "robust"
    val_size: int = 0  # 0: the horizon
    early_stop_patience_steps: int = 5
    val_check_steps: int = 25
    random_seed: int = 1
    # "mqloss" (median + 80/95 % bounds), or a point loss: "mae", "mase" (MAE over the window's lag-1
    # naive MAE, the M4 scale) or "smape" (the M4 accuracy measure itself, as the N-BEATS paper trained)
    loss: str = "mqloss"
    refit_every: int = 4
    # Fit on only the last ``train_tail`` values of each series (0: all). Every training step unfolds
    # whole series into windows, so very long histories (M4 Weekly: up to 2,600 weeks) cost time per
    # step, and weeks from decades ago say little about the next quarter.
    train_tail: int = 0
    # "log1p": the network learns log(1 + y) and forecasts are mapped back (quantiles survive a
    # monotone map, so the bounds stay bounds). A multiplicative view of demand, as the XGBoost
    # member's log transform: a 20 % swing weighs the same at 30 units a week as at 3,000.
    transform: str = "none"
    # Several networks combined by the median (deep_ensemble): per-network overrides of these
    # parameters, e.g. [{"input_size": 26}, {"input_size": 52, "loss": "smape"}], or a dict of lists
    # whose product is that list, e.g. {"input_size": [26, 52], "random_seed": [1, 2]}. (): one network.
    ensemble: tuple[dict, ...] = ()
    # LSTM
    encoder_hidden_size: int = 64
    encoder_n_layers: int = 2
    decoder_hidden_size: int = 64
    # NHITS (three stacks, as the paper; each block an MLP of two layers of ``mlp_width``)
    mlp_width: int = 256
    n_blocks: int = 1
    # NBEATS (``n_blocks`` blocks of ``mlp_width`` per stack, as NHITS). The interpretable set of the
    # paper by default: a generic ("identity") stack, a polynomial trend of degree ``n_basis`` and a
    # Fourier seasonality of ``n_harmonics`` harmonics over the window.
    stack_types: tuple[str, ...] = ("identity", "trend", "seasonality")
    n_harmonics: int = 2
    n_basis: int = 2
    model_: Any = field(default=None, repr=False)
    nf_: Any = field(default=None, repr=False)
    members_: list = field(default_factory=list, repr=False)  # the fitted networks of an ensemble

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.transform not in ("none", "log1p"):
            raise ValueError(f"transform must be 'none' or 'log1p', got {self.transform!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        self.stack_types = tuple(self.stack_types)  # a JSON list (params, saved config) reads back as a tuple
        unknown = set(self.stack_types) - STACK_TYPES
        if unknown or not self.stack_types:
            raise ValueError(f"stack_types must be a non-empty list of {sorted(STACK_TYPES)}, got {self.stack_types!r}")
        self.alias = self.alias or self.kind
        self.ensemble = deep_ensemble.expand(self.ensemble, COMMON_PARAMS + KIND_PARAMS[self.kind])
        for i, override in enumerate(self.ensemble):
            self._network(i, override)  # each network's parameters pass the same checks now, not at fit

    def _network(self, i: int, override: dict) -> NeuralMember:
        """The ``i``-th network of the ensemble: this member's parameters with ``override`` on top."""
        return type(self)(**{**self.params(), "ensemble": (), **override}, alias=f"{self.alias}[{i}]")

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        losses = {o.get("loss", self.loss) for o in self.ensemble} or {self.loss}
        return Capabilities(
            scope="global", native_intervals=losses == {"mqloss"}, refit="every_k", refit_every=self.refit_every
        )

    def params(self) -> dict:
        """The constructor parameters, JSON-able (what the saved config records)."""
        skip = {"alias", "model_", "nf_", "members_"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name not in skip}

    # ------------------------------------------------------------------ building

    def _trainer_kwargs(self) -> dict:
        import torch

        self._root = tempfile.mkdtemp(prefix="stockml-nf-")
        return {
            "accelerator": "gpu" if torch.cuda.is_available() else "cpu",
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": self._root,
            "deterministic": True,
        }

    def _build(self, early_stopping: bool = True):
        """A fresh (unfitted) neuralforecast model from the parameters.

        ``early_stopping=False`` builds it without the callback: neuralforecast attaches Lightning's
        EarlyStopping in the constructor, so switching it off afterwards leaves a callback waiting for
        a validation loss that is never logged (it then fails the fit)."""
        from neuralforecast.losses.pytorch import MAE, MASE, SMAPE, MQLoss
        from neuralforecast.models import LSTM, NBEATS, NHITS

        losses = {
            "mqloss": lambda: MQLoss(level=list(LEVELS)),
            "mae": MAE,
            "mase": lambda: MASE(seasonality=1),
            "smape": SMAPE,
        }
        common = {
            "h": self.horizon,
            "input_size": self.input_size,
            "loss": losses[self.loss](),
            "valid_loss": losses[self.loss](),
            "max_steps": self.max_steps,
            "learning_rate": self.learning_rate,
            "early_stop_patience_steps": self.early_stop_patience_steps if early_stopping else -1,
            "val_check_steps": self.val_check_steps,
            "batch_size": self.batch_size,
            "windows_batch_size": self.windows_batch_size,
            "start_padding_enabled": True,
            "scaler_type": self.scaler_type,
            "random_seed": self.random_seed,
            "alias": self.kind,
            **self._trainer_kwargs(),
        }
        if self.kind == "LSTM":
            return LSTM(
                encoder_hidden_size=self.encoder_hidden_size,
                encoder_n_layers=self.encoder_n_layers,
                decoder_hidden_size=self.decoder_hidden_size,
                **common,
            )
        w = self.mlp_width
        if self.kind == "NBEATS":
            n = len(self.stack_types)
            return NBEATS(
                stack_types=list(self.stack_types),
                n_blocks=[self.n_blocks] * n,
                mlp_units=n * [[w, w]],
                n_harmonics=self.n_harmonics,
                n_basis=self.n_basis,
                **common,
            )
        return NHITS(n_blocks=[self.n_blocks] * 3, mlp_units=3 * [[w, w]], **common)

    def _wrap(self, model):
        from neuralforecast import NeuralForecast

        return NeuralForecast(models=[model], freq=self.freq)

    # ------------------------------------------------------------------ the forecaster contract

    def fit(self, panel: pd.DataFrame) -> Self:
        """Train one network on every series of ``panel`` (early stopping on each series' last steps);
        with ``ensemble``, one such network per override, one after the other."""
        if self.ensemble:
            self.members_ = []
            for i, override in enumerate(self.ensemble):
                network = self._network(i, override).fit(panel)
                del network._panel  # predict hands every network the ensemble's history: one copy, not one each
                self.members_.append(network)
            self._panel = panel[["unique_id", "ds", "y"]]
            return self
        data = self._forward(panel[["unique_id", "ds", "y"]])
        full = panel[["unique_id", "ds", "y"]]
        if self.train_tail:
            data = data.sort_values(["unique_id", "ds"], kind="stable")
            data = data[data.groupby("unique_id", observed=True).cumcount(ascending=False) < self.train_tail]
        val = self.val_size or self.horizon
        lengths = data.groupby("unique_id", observed=True)["y"].transform("size")
        if (lengths > val).any():
            # Series too short for a validation window would make neuralforecast drop validation for all:
            # the network learns from the others (it still forecasts the short ones, from their history).
            data = data[lengths > val]
        else:  # no series has room for a validation window: train without one
            val = 0
        self.model_ = self._build(early_stopping=bool(val))
        self.nf_ = self._wrap(self.model_)
        with _quiet():
            self.nf_.fit(df=data, val_size=val)
        self.model_ = self.nf_.models[0]  # NeuralForecast trains a copy of the model it was given
        self._panel = full
        return self

    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame:
        """Forecast every series of ``panel`` (default: the fitted one) ``h`` ≤ ``horizon`` steps ahead."""
        if self.nf_ is None and not self.members_:
            raise RuntimeError(f"{self.alias}.predict called before fit (or load_state)")
        panel = getattr(self, "_panel", None) if panel is None else panel
        if panel is None:
            raise RuntimeError(f"{self.alias}.predict needs the history to forecast from (panel=...)")
        if h > self.horizon:
            raise ValueError(f"{self.alias} was trained for h <= {self.horizon}; asked for {h}")
        if self.members_:
            return deep_ensemble.median_combine([m.predict(h, level, panel) for m in self.members_])
        data = panel[["unique_id", "ds", "y"]].sort_values(["unique_id", "ds"], kind="stable")
        with _quiet():
            raw = self.nf_.predict(df=self._forward(data))
        raw = raw.reset_index() if "unique_id" not in raw.columns else raw
        raw = raw.sort_values(["unique_id", "ds"], kind="stable")
        k = self.kind
        point = f"{k}-median" if f"{k}-median" in raw.columns else k
        step = raw.groupby("unique_id", sort=False, observed=True).cumcount().to_numpy()
        raw = raw[step < h]
        last = data.groupby("unique_id", sort=True, observed=True)["ds"].max()
        out = pd.DataFrame(
            {
                "unique_id": raw["unique_id"].to_numpy(),
                "ds": future_ds(last.to_numpy(), h, self.freq),
                "yhat": raw[point].to_numpy(dtype=float),
            }
        )
        if (out["unique_id"].to_numpy() != np.repeat(last.index.to_numpy(), h)).any():
            raise RuntimeError(f"{self.alias}: neuralforecast returned series in an unexpected order")
        # MQLoss learns each quantile on its own, so they can cross; sorting them per row (the
        # rearrangement of Chernozhukov et al., 2010) gives ordered bounds and never a worse loss.
        names = [f"{k}-lo-{lv}" for lv in sorted(LEVELS, reverse=True)] + [point]
        names += [f"{k}-hi-{lv}" for lv in sorted(LEVELS)]
        if all(n in raw.columns for n in names):
            q = np.sort(raw[names].to_numpy(dtype=float), axis=1)
            sorted_q = dict(zip(names, q.T, strict=True))
            out["yhat"] = sorted_q[point]
        else:
            sorted_q = {}
        for lv in level:
            lo, hi = f"{k}-lo-{lv}", f"{k}-hi-{lv}"
            out[f"lo{lv}"] = sorted_q.get(lo, np.nan)
            out[f"hi{lv}"] = sorted_q.get(hi, np.nan)
        if self.transform == "log1p":
            values = ["yhat"] + [f"{b}{lv}" for lv in level for b in ("lo", "hi")]
            out[values] = np.expm1(np.clip(out[values].to_numpy(dtype=float), -50, 50))
        return out

    def _forward(self, data: pd.DataFrame) -> pd.DataFrame:
        """The values the network sees (``transform``); demand below zero is floored at zero first."""
        if self.transform == "log1p":
            return data.assign(y=np.log1p(np.maximum(data["y"].to_numpy(dtype=float), 0.0)))
        return data

    # ------------------------------------------------------------------ carried state

    def save_state(self, folder: Path) -> dict:
        """The network's ``state_dict`` (torch format) and a JSON config to rebuild it (one file per network
        of an ensemble)."""
        folder.mkdir(parents=True, exist_ok=True)
        weights: str | list[str] | None = None
        if self.ensemble:  # one state_dict per network, in the order of ``ensemble``
            weights = [f"weights_{i:02d}.pt" for i in range(len(self.members_))] or None
            for name, m in zip(weights or [], self.members_, strict=True):
                m._save(folder / name)
        elif self.model_ is not None:
            self._save(folder / WEIGHTS)
            weights = WEIGHTS
        state = {
            "format": self.ENSEMBLE_FORMAT if self.ensemble else self.STATE_FORMAT,
            "kind": self.kind,
            "params": {k: v for k, v in self.params().items()},
            "weights": weights,
            "libraries": library_versions(),
        }
        (folder / "config.json").write_text(json.dumps(state, indent=2))
        return state

    def _save(self, path: Path) -> None:
        import torch

        torch.save({k: v.detach().cpu() for k, v in self.model_.state_dict().items()}, path)

    def load_state(self, folder: Path, state: dict) -> Self:
        if state.get("format") not in (self.STATE_FORMAT, self.ENSEMBLE_FORMAT):
            raise ValueError(
                f"{self.kind} state format {state.get('format')!r} is not supported; this version reads "
                f"{self.STATE_FORMAT} and {self.ENSEMBLE_FORMAT}"
            )
        for k, v in state.get("params", {}).items():
            if k in {f.name for f in fields(self)}:
                setattr(self, k, v)
        self.__post_init__()  # the same checks and normal forms as a constructed member (JSON lists → tuples)
        if not state.get("weights"):
            return self
        if self.ensemble:
            names = state["weights"]
            if state["format"] != self.ENSEMBLE_FORMAT or len(names) != len(self.ensemble):
                raise ValueError(f"{self.alias}: the saved weights {names!r} do not match its ensemble")
            pairs = enumerate(zip(self.ensemble, names, strict=True))
            self.members_ = [self._network(i, o)._load(folder / n) for i, (o, n) in pairs]
            return self
        return self._load(folder / state["weights"])

    def _load(self, path: Path) -> Self:
        """Rebuild the network and read its ``state_dict`` from ``path``."""
        import torch

        self.model_ = self._build()
        weights = torch.load(path, map_location="cpu", weights_only=True)
        self.model_.load_state_dict(weights, strict=True)
        self.nf_ = self._wrap(self.model_)
        # What NeuralForecast.fit would have set and its predict(df=...) reads.
        nf = self.nf_
        nf.id_col, nf.time_col, nf.target_col = "unique_id", "ds", "y"
        nf.prediction_intervals, nf._cs_df = None, None
        nf.scalers_, nf.static_scalers_, nf.categorical_vocab_ = {}, {}, {}
        nf._fitted = True
        return self


def build(kind: str):
    """The registry's builder for ``kind``: ``build(setup, **params)`` → an unfitted member."""

    def member(setup, **kw: object) -> NeuralMember:
        return NeuralMember(kind=kind, horizon=setup.horizon, freq=setup.freq, **kw)

    return member


def defaults(kind: str) -> dict:
    params = COMMON_PARAMS + KIND_PARAMS[kind]
    m = NeuralMember(kind=kind)
    return {p: getattr(m, p) for p in params}
