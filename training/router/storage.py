"""The router model stored as data: a manifest with a format version, artifacts in their libraries' formats.

Why not a pickle: a pickle of our own classes breaks as soon as a module moves or a class is
renamed, so every registered champion would die with a refactor. What is stored instead::

    manifest.json         format name and version, horizon, season length, the blend policy, the
                          pattern rule, training info, tuned member parameters, and every member with
                          its class, package and version, capabilities and saved state
    router/booster.json   the meta-model in XGBoost's JSON format
    quantiles.parquet     the interval quantiles (per method, pattern and step)
    members/<method>/     the fitted state of members that carry one (XGBoost JSON, torch state_dicts
                          with a JSON config, or an external checkpoint named by path and hash)

:func:`load_router` reads the format versions it knows and refuses any other with a message
saying which it found and which it reads. Every change to the layout bumps ``FORMAT_VERSION``
and keeps a reader for the old one, or a clear refusal.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from training.forecasting.methods import unavailable_methods
from training.forecasting.zoo import ModelZoo, member_library_versions
from training.router.model import ForecastRouter
from training.router.predict import RouterModel
from training.router.train import BlendPolicy, PatternRule

FORMAT = "stockml-router"
FORMAT_VERSION = 1
READS = (1,)
MANIFEST = "manifest.json"


class ModelFormatError(ValueError):
    """The saved model is not in a format this version of stockml reads."""


class MemberUnavailableError(RuntimeError):
    """The saved model routes to a member that cannot run here (e.g. TimesFM without its checkpoint).

    Refused rather than served with the router's weights renormalised over the other members: the
    model's holdout scores, and the promotion that rests on them, were measured with every member."""


def _stockml_version() -> str:
    try:
        return version("stockml")
    except PackageNotFoundError:
        return "unknown"


def save_router(model: RouterModel, folder: Path) -> Path:
    """Write ``model`` under ``folder`` (created); returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    zoo = model.zoo or ModelZoo(list(model.router.methods_), model.season_length, params=model.zoo_params,
                                horizon=model.horizon)  # fmt: skip
    members = zoo.save(folder / "members")
    model.quantiles.to_parquet(folder / "quantiles.parquet", index=False)
    router_state = model.router.save_state(folder / "router")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "saved_with": {"stockml": _stockml_version(), **member_library_versions()},
        "season_length": model.season_length,
        "horizon": model.horizon,
        "freq": zoo.freq,
        "router": {**router_state, "path": "router"},
        "policy": asdict(model.policy),
        "rule": asdict(model.rule),
        "quantiles": "quantiles.parquet",
        "info": model.info,
        "zoo_params": model.zoo_params,
        "members_fitted": model.zoo is not None,
        "members": members,
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        raise ModelFormatError(f"{folder} holds no {MANIFEST}: not a saved stockml router model")
    manifest = json.loads(path.read_text())
    found = manifest.get("format"), manifest.get("format_version")
    if found[0] != FORMAT or found[1] not in READS:
        raise ModelFormatError(
            f"the model at {folder} is format {found[0]!r} version {found[1]!r}; this stockml "
            f"({_stockml_version()}) reads {FORMAT!r} version(s) {', '.join(map(str, READS))}. "
            "Load it with the stockml release that saved it, or retrain and register it again."
        )
    return manifest


def load_router(folder: Path) -> RouterModel:
    """The :class:`RouterModel` saved under ``folder``, refused with a clear message if its format is unknown."""
    folder = Path(folder)
    m = read_manifest(folder)
    missing = unavailable_methods(e["method"] for e in m["members"])
    if missing:
        raise MemberUnavailableError(
            f"the model at {folder} routes to {sorted(missing)}, which cannot run here: "
            + "; ".join(f"{k}: {v}" for k, v in missing.items())
            + ". It is refused rather than served without them; provide what is missing and reload."
        )
    router = ForecastRouter.from_state(folder / m["router"]["path"], m["router"])
    rule = m["rule"]
    rule = PatternRule(rule["adi_cutoff"], rule["cv2_cutoff"], tuple(rule["xyz_cutoffs"]))
    zoo = None
    if m["members_fitted"]:
        zoo = ModelZoo.load(folder / "members", m["members"], season_length=m["season_length"], freq=m["freq"],
                            horizon=m["horizon"])  # fmt: skip
    return RouterModel(
        router, BlendPolicy(**m["policy"]), m["season_length"], m["horizon"], rule,
        pd.read_parquet(folder / m["quantiles"]), m["info"], m["zoo_params"], zoo,
    )  # fmt: skip
