"""TimesFM 2.5 (Google's 200M-parameter time-series foundation model), zero-shot, as a zoo member.

It learns nothing from our data (``Capabilities(fits=False, scope="global", refit="never")``): every
forecast is the pretrained model applied to the history it is given. Its quantile head gives the
mean and the deciles 0.1 … 0.9 per step; the point forecast is the median, and the bounds are its
own (native intervals, see :func:`quantile_bounds`).

**Weights are never downloaded here.** The checkpoint is the Hugging Face release
``google/timesfm-2.5-200m-pytorch`` (one ``model.safetensors`` and a ``config.json``), read from a
local path: ``checkpoint=`` when the member is built, else the path the application gave
:func:`configure` (its ``STOCKML_TIMESFM_CHECKPOINT`` setting: a folder holding ``model.safetensors``,
or the file itself), else the local Hugging Face cache, only read (no network call). The weights are loaded
with the ``timesfm`` package's own ``load_checkpoint`` (safetensors, strict ``load_state_dict``),
never ``from_pretrained`` with hub access. Without a checkpoint the member raises
:class:`CheckpointMissing`, naming the setting and how to fetch the weights.

The architecture is read from the checkpoint's tensor shapes: the release gives the 200M
configuration of ``timesfm`` (20 layers, 1280 dims, 16 heads); a smaller checkpoint of the same
classes (the tests' randomly initialised one) gets the same classes at its own size.

``timesfm`` and ``torch`` are imported when a forecast is asked for, never at import.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Self

import numpy as np
import pandas as pd

from training.forecasting.contract import Capabilities, Forecaster, future_ds, panel_arrays

CHECKPOINT_ENV = "STOCKML_TIMESFM_CHECKPOINT"
HF_REPO_ID = "google/timesfm-2.5-200m-pytorch"  # TimesFM_2p5_200M_torch.DEFAULT_REPO_ID in timesfm 3.0.2
WEIGHTS_FILE = "model.safetensors"  # TimesFM_2p5_200M_torch.WEIGHTS_FILENAME
FETCH_HINT = (
    f"with internet access: `huggingface-cli download {HF_REPO_ID} --local-dir /path/to/timesfm-2.5` "
    f"(231 M parameters), then set {CHECKPOINT_ENV}=/path/to/timesfm-2.5"
)
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # columns 1..9 of the quantile output; 0 is the mean
MEDIAN = 5


class CheckpointMissing(RuntimeError):
    """No TimesFM checkpoint where the platform looks for one; the message says how to get one."""


@dataclass(frozen=True)
class CheckpointStatus:
    """Where the TimesFM weights are (``path``) or why there are none (``reason``)."""

    available: bool
    path: Path | None
    source: str  # "argument", "setting", "hf-cache" or "none"
    reason: str = ""

    def as_dict(self) -> dict:
        return {
            "available": self.available,
            "checkpoint": str(self.path) if self.path else None,
            "source": self.source,
            "detail": self.reason or None,
        }


def _weights_in(path: Path) -> Path:
    return path / WEIGHTS_FILE if path.is_dir() else path


@dataclass
class _Where:
    checkpoint: Path | None = None  # the application's setting, given to configure()
    hf_cache: Path | None = None  # None: huggingface_hub's default cache folder


_WHERE = _Where()
_KEEP = object()


def configure(checkpoint: str | Path | None = None, *, hf_cache: object = _KEEP) -> None:
    """Where this process finds the TimesFM weights: the application calls it with its setting
    (``stockml.settings.get_settings`` does, with ``STOCKML_TIMESFM_CHECKPOINT``); the library reads
    no environment itself. ``hf_cache``: the Hugging Face cache folder to look in (default: the hub's own)."""
    _WHERE.checkpoint = Path(checkpoint).expanduser() if checkpoint else None
    if hf_cache is not _KEEP:
        _WHERE.hf_cache = Path(hf_cache) if hf_cache else None  # type: ignore[arg-type]


def checkpoint_status(checkpoint: str | Path | None = None) -> CheckpointStatus:
    """Find the weights without touching the network: ``checkpoint``, else the configured setting, else the
    local Hugging Face cache."""
    for raw, source in ((checkpoint, "argument"), (_WHERE.checkpoint, "setting")):
        if raw:
            weights = _weights_in(Path(raw).expanduser())
            if weights.is_file():
                return CheckpointStatus(True, weights, source)
            reason = f"{CHECKPOINT_ENV}={raw} holds no {WEIGHTS_FILE} (expected {weights}); {FETCH_HINT}"
            return CheckpointStatus(False, None, source, reason)
    cached = _hf_cached()
    if cached is not None:
        return CheckpointStatus(True, cached, "hf-cache")
    return CheckpointStatus(False, None, "none", f"no checkpoint configured (set {CHECKPOINT_ENV}); {FETCH_HINT}")


def _hf_cached() -> Path | None:
    """The release's weights in the local Hugging Face cache, if a download put them there (no network:
    ``try_to_load_from_cache`` only reads the cache folder)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with timesfm
        return None
    cache_dir = str(_WHERE.hf_cache) if _WHERE.hf_cache else None
    found = try_to_load_from_cache(HF_REPO_ID, WEIGHTS_FILE, cache_dir=cache_dir)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def require_checkpoint(checkpoint: str | Path | None = None) -> Path:
    status = checkpoint_status(checkpoint)
    if not status.available:
        raise CheckpointMissing(f"TimesFM: {status.reason}")
    return status.path


# ---------------------------------------------------------------------------- the model


def architecture(weights: Path):
    """The ``TimesFM_2p5_200M_Definition`` that matches the checkpoint's tensor shapes (header only)."""
    import dataclasses

    from safetensors import safe_open
    from timesfm import configs
    from timesfm.timesfm_2p5.timesfm_2p5_base import TimesFM_2p5_200M_Definition

    with safe_open(str(weights), "pt") as f:
        shape = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - safe_open has no iteration
    base = TimesFM_2p5_200M_Definition()
    q = len(base.quantiles) + 1
    try:

        def block(name: str, cfg):
            hidden, inp = shape[f"{name}.hidden_layer.weight"]
            out = shape[f"{name}.output_layer.weight"][0]
            return dataclasses.replace(cfg, input_dims=inp, hidden_dims=hidden, output_dims=out,
                                       use_bias=f"{name}.hidden_layer.bias" in shape)  # fmt: skip

        layers = len({k.split(".")[1] for k in shape if k.startswith("stacked_xf.")})
        model_dims = shape["stacked_xf.0.pre_attn_ln.scale"][0]
        head_dim = shape["stacked_xf.0.attn.query_ln.scale"][0]
        xf = dataclasses.replace(
            base.stacked_transformers.transformer,
            model_dims=model_dims,
            hidden_dims=shape["stacked_xf.0.ff0.weight"][0],
            num_heads=model_dims // head_dim,
        )
        definition = dataclasses.replace(
            base,
            tokenizer=block("tokenizer", base.tokenizer),
            stacked_transformers=configs.StackedTransformersConfig(num_layers=layers, transformer=xf),
            output_projection_point=block("output_projection_point", base.output_projection_point),
            output_projection_quantiles=block("output_projection_quantiles", base.output_projection_quantiles),
        )
    except (KeyError, IndexError) as exc:
        raise ValueError(f"{weights} is not a TimesFM 2.5 torch checkpoint (no tensor {exc})") from exc
    expected = {
        "tokenizer input": (definition.tokenizer.input_dims, 2 * base.input_patch_len),
        "point output": (definition.output_projection_point.output_dims, base.output_patch_len * q),
        "quantile output": (definition.output_projection_quantiles.output_dims, base.output_quantile_len * q),
    }
    wrong = {k: v for k, v in expected.items() if v[0] != v[1]}
    if wrong:
        raise ValueError(f"{weights} is not a TimesFM 2.5 checkpoint: (found, expected) dims {wrong}")
    return definition


def model_class(definition=None):
    """The ``timesfm`` wrapper class for ``definition``: the package's own ``TimesFM_2p5_200M_torch`` for the
    released configuration, else a subclass whose torch module has that configuration (same layers)."""
    from timesfm.timesfm_2p5.timesfm_2p5_base import TimesFM_2p5_200M_Definition
    from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch, TimesFM_2p5_200M_torch_module

    if definition is None or definition == TimesFM_2p5_200M_Definition():
        return TimesFM_2p5_200M_torch
    module = type("TimesFM_2p5_torch_module_sized", (TimesFM_2p5_200M_torch_module,), {"config": definition})

    class TimesFM_2p5_torch_sized(TimesFM_2p5_200M_torch):
        def __init__(self, torch_compile: bool = False, config: dict | None = None, **kwargs: object) -> None:
            self.model = module()
            self.torch_compile = torch_compile
            if config is not None:
                self._hub_mixin_config = config

    return TimesFM_2p5_torch_sized


_LOCK = threading.Lock()  # one forecast at a time per process: compile() sets the shared forecast config
_MODELS: dict[tuple, object] = {}


def load_model(weights: Path):
    """The checkpoint at ``weights`` loaded once per process (keyed by path, size and mtime)."""
    weights = Path(weights).resolve()
    stat = weights.stat()
    key = (str(weights), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        if key not in _MODELS:
            wrapper = model_class(architecture(weights))(torch_compile=False)
            wrapper.load_checkpoint(str(weights), torch_compile=False)  # safetensors, strict; no hub call
            _MODELS.clear()  # one checkpoint in memory at a time
            _MODELS[key] = wrapper
        return _MODELS[key]


# ---------------------------------------------------------------------------- intervals


def quantile_bounds(quantiles: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the central ``level`` % interval from TimesFM's output (``[..., 10]``: mean, deciles).

    Levels whose tails are deciles (80: 10 %/90 %, 60, 40, 20) are read off the quantile head. Wider
    ones (95: 2.5 %/97.5 %) stretch the median's distances to the 10 % and 90 % quantiles by the normal
    ratio z(1 − tail) / z(0.9) (1.53 for 95 %): the model's own asymmetric spread, extrapolated.
    """
    tail = round((100 - level) / 200, 6)
    if tail in QUANTILES:
        i = QUANTILES.index(tail) + 1
        return quantiles[..., i], quantiles[..., 10 - i]
    med = quantiles[..., MEDIAN]
    stretch = NormalDist().inv_cdf(1 - tail) / NormalDist().inv_cdf(0.9)
    return med - stretch * (med - quantiles[..., 1]), med + stretch * (quantiles[..., 9] - med)


# ---------------------------------------------------------------------------- the member


class TimesFM(Forecaster):
    """TimesFM 2.5 zero-shot: forecasts ``h`` steps from the last ``context`` values of each series.

    ``context``: the most history the model reads (rounded up to its patch of 32; 512 weeks is
    ten years of weekly data). ``batch_size``: series per forward pass. ``flip_invariance``:
    TimesFM's symmetric decoding (two passes, the package's recommended setting).
    """

    capabilities = Capabilities(fits=False, scope="global", refit="never", native_intervals=True)

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        context: int = 512,
        batch_size: int = 64,
        flip_invariance: bool = True,
        freq: str | int = "W-MON",
    ) -> None:
        self.checkpoint = checkpoint
        self.context = context
        self.batch_size = batch_size
        self.flip_invariance = flip_invariance
        self.freq = freq
        self.panel_: pd.DataFrame | None = None

    def fit(self, panel: pd.DataFrame) -> Self:
        """Nothing to learn (zero-shot); keeps ``panel`` as the default history and checks the weights exist."""
        require_checkpoint(self.checkpoint)
        self.panel_ = panel
        return self

    def predict(self, h: int, level: Sequence[int] = (), panel: pd.DataFrame | None = None) -> pd.DataFrame:
        panel = panel if panel is not None else self.panel_
        if panel is None:
            raise RuntimeError("TimesFM.predict: give the history to forecast from (panel=) or call fit first")
        ids, ys, stamps = panel_arrays(panel)
        point, quantiles = self.forecast_arrays(ys, h)
        out = pd.DataFrame(
            {"unique_id": np.repeat(ids, h), "ds": future_ds(np.array([s[-1] for s in stamps]), h, self.freq),
             "yhat": point.ravel()}
        )  # fmt: skip
        nonneg = np.array([bool((y >= 0).all()) for y in ys])[:, None]
        for lv in level:
            lo, hi = quantile_bounds(quantiles, lv)
            out[f"lo{lv}"] = np.where(nonneg, np.maximum(lo, 0.0), lo).ravel()
            out[f"hi{lv}"] = hi.ravel()
        return out

    def forecast_arrays(self, ys: list[np.ndarray], h: int) -> tuple[np.ndarray, np.ndarray]:
        """(point ``[n, h]``, quantiles ``[n, h, 10]``) for the series ``ys``."""
        from timesfm import ForecastConfig

        model = load_model(require_checkpoint(self.checkpoint))
        longest = max(len(y) for y in ys)
        context = 32 * math.ceil(min(self.context, longest) / 32)
        config = ForecastConfig(
            max_context=context,
            max_horizon=h,
            per_core_batch_size=max(1, min(self.batch_size, len(ys))),
            normalize_inputs=True,
            use_continuous_quantile_head=True,
            force_flip_invariance=self.flip_invariance,
            infer_is_positive=True,
            fix_quantile_crossing=True,
        )
        with _LOCK:
            model.compile(config)
            point, quantiles = model.forecast(h, [np.asarray(y, dtype=float)[-context:] for y in ys])
        return np.asarray(point, dtype=float)[:, :h], np.asarray(quantiles, dtype=float)[:, :h, :]
