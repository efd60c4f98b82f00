"""One zoo member registered on its own (``stockml-lstm``), stored as data like the router.

The layout is the router's (:mod:`training.router.storage`) without the router::

    manifest.json         format name and version, method, horizon, season length, frequency,
                          training info (data window, holdout score) and the member's manifest entry
                          (class, package and version, parameters, capabilities, saved state)
    members/<method>/     the member's state in its library's format (for the LSTM a torch
                          ``state_dict`` plus a JSON config: :meth:`NeuralMember.save_state`)

Never a pickle of our classes nor a Lightning checkpoint, so a registered version loads after any
refactor that keeps this reader. :func:`load_member_model` refuses formats it does not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from training.forecasting.contract import LEVELS
from training.forecasting.zoo import ModelZoo, member_library_versions
from training.router.predict import HistoryError, regularise
from training.router.storage import ModelFormatError

FORMAT = "stockml-member"
FORMAT_VERSION = 1
READS = (1,)
MANIFEST = "manifest.json"
COLUMNS = ["unique_id", "ds", "step", "yhat", "lo80", "hi80", "lo95", "hi95", "method"]

MIN_WEEKS = 2  # the fewest weeks of history a member forecasts from (the zoo's members need two)


@dataclass
class MemberModel:
    """A fitted zoo member served alone: history (unique_id, ds, y) in, forecasts with 80/95 % intervals out."""

    zoo: ModelZoo
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.zoo.methods or []) != 1 or not self.zoo.fitted_:
            raise ValueError(f"a member model holds exactly one fitted member; got {self.zoo.methods}")

    @property
    def method(self) -> str:
        return str(self.zoo.methods[0])

    @property
    def horizon(self) -> int:
        return int(self.zoo.horizon)

    def predict(self, history: pd.DataFrame, horizon: int | None = None) -> pd.DataFrame:
        """Forecast every SKU of ``history`` (put on the weekly grid first) ``horizon`` weeks ahead."""
        h = int(horizon or self.horizon)
        if not 1 <= h <= self.horizon:
            raise HistoryError(
                f"{self.method} forecasts 1 to {self.horizon} weeks ahead (its trained horizon); got {h}"
            )
        hist = regularise(history, min_weeks=MIN_WEEKS)
        fc = self.zoo.predict(h, LEVELS, panel=hist)
        fc = fc.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
        fc["step"] = fc.groupby("unique_id").cumcount() + 1
        fc["ds"] = pd.to_datetime(fc["ds"])
        return fc[COLUMNS]


def save_member_model(model: MemberModel, folder: Path) -> Path:
    """Write ``model`` under ``folder`` (created); returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    zoo = model.zoo
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "saved_with": member_library_versions(),
        "method": model.method,
        "season_length": zoo.season_length,
        "horizon": zoo.horizon,
        "freq": zoo.freq,
        "info": model.info,
        "members": zoo.save(folder / "members"),
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_member_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.exists():
        raise ModelFormatError(f"{folder} holds no {MANIFEST}: not a saved stockml member model")
    manifest = json.loads(path.read_text())
    found = manifest.get("format"), manifest.get("format_version")
    if found[0] != FORMAT or found[1] not in READS:
        raise ModelFormatError(
            f"the model at {folder} is format {found[0]!r} version {found[1]!r}; this stockml reads "
            f"{FORMAT!r} version(s) {', '.join(map(str, READS))}. Retrain and register it again."
        )
    return manifest


def load_member_model(folder: Path) -> MemberModel:
    """The :class:`MemberModel` saved under ``folder`` (its state read back, nothing refitted)."""
    folder = Path(folder)
    m = read_member_manifest(folder)
    zoo = ModelZoo.load(folder / "members", m["members"], season_length=m["season_length"], freq=m["freq"],
                        horizon=m["horizon"])  # fmt: skip
    return MemberModel(zoo, m["info"])
