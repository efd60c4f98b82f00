"""Load the router from the MLflow registry by alias and follow the aliases.

``champion`` serves; ``challenger`` is loaded too when the registry has one and gets a share of
the ``/forecast`` traffic by Thompson sampling (:mod:`serving.bentos.traffic`); both are reported
by ``/model_info``. A reload loads and warms up the new version
*before* swapping it in: readers take one reference to an immutable :class:`LoadedModel` per
request, and the swap replaces the whole mapping in one assignment, so requests in flight
finish on the old version and none is dropped or sees a half-loaded model. A version that
fails to load or to warm up is not swapped in; the old one keeps serving and the error is
kept for ``/model_info`` and ``/admin/reload``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from training.registry.mlflow_registry import CHALLENGER, CHAMPION

log = logging.getLogger("stockml.serving.models")

ALIASES = (CHAMPION, CHALLENGER)
_CREDENTIALS = re.compile(r"(//)[^/@\s:]+:[^/@\s]*@")


def redact(text: str) -> str:
    """Hide user:password in URIs (postgresql://u:p@host/db -> postgresql://***@host/db)."""
    return _CREDENTIALS.sub(r"\1***@", text)


@dataclass(frozen=True)
class LoadedModel:
    name: str
    alias: str
    version: str
    run_id: str
    model: Any = field(repr=False)  # mlflow.pyfunc.PyFuncModel
    loaded_at: str = ""

    @property
    def router(self) -> Any:
        """The RouterModel inside the pyfunc (for its pattern rule and description)."""
        return getattr(self.model.unwrap_python_model(), "model", None)

    def predict(self, history: pd.DataFrame, horizon: int) -> pd.DataFrame:
        return self.model.predict(history, params={"horizon": int(horizon)})

    def info(self) -> dict[str, Any]:
        out = {"version": self.version, "run_id": self.run_id, "loaded_at": self.loaded_at}
        with contextlib.suppress(Exception):  # describe() is informative only
            out["router"] = self.router.describe()
        return out


def warmup_history() -> pd.DataFrame:
    """Two synthetic SKUs (one smooth, one intermittent) to compile and exercise the members."""
    rng = np.random.default_rng(0)
    ds = pd.date_range("2022-01-03", periods=80, freq="W-MON")
    smooth = 20 + rng.normal(0, 3, len(ds)).clip(-15)
    sparse = np.where(rng.random(len(ds)) < 0.3, rng.integers(1, 9, len(ds)), 0)
    return pd.DataFrame(
        {
            "unique_id": ["warmup-smooth"] * len(ds) + ["warmup-sparse"] * len(ds),
            "ds": list(ds) * 2,
            "y": np.concatenate([smooth, sparse]).astype("float64"),
        }
    )


class ModelWatcher:
    """The loaded versions by alias, a reload that checks the registry, and a polling thread."""

    def __init__(self, name: str, poll_s: float = 30.0, client: MlflowClient | None = None) -> None:
        self.name = name
        self.poll_s = poll_s
        self._client = client
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()  # serialises reloads (poll thread vs admin endpoint)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_check: str | None = None
        self.reloads = 0

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient()
        return self._client

    def get(self, alias: str = CHAMPION) -> LoadedModel | None:
        return self._models.get(alias)

    @property
    def champion(self) -> LoadedModel | None:
        return self._models.get(CHAMPION)

    def versions(self) -> dict[str, str | None]:
        models = self._models
        return {a: (models[a].version if a in models else None) for a in ALIASES}

    def _registry_version(self, alias: str) -> Any | None:
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")) or "not found" in str(exc).lower():
                return None
            raise

    def _load(self, alias: str, mv: Any) -> LoadedModel:
        t0 = time.perf_counter()
        model = mlflow.pyfunc.load_model(f"models:/{self.name}/{mv.version}")
        loaded = LoadedModel(
            self.name,
            alias,
            str(mv.version),
            str(mv.run_id or ""),
            model,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        loaded.predict(warmup_history(), horizon=2)  # refuse a model that cannot forecast
        log.info("loaded %s v%s as %s in %.1f s", self.name, loaded.version, alias, time.perf_counter() - t0)
        return loaded

    def refresh(self, force: bool = False) -> dict[str, Any]:
        """Check both aliases and load what moved; returns {alias: {"from", "to", "changed"}}."""
        with self._lock:
            report: dict[str, Any] = {}
            errors = []
            new = dict(self._models)
            for alias in ALIASES:
                before = new.get(alias)
                entry = {"from": before.version if before else None, "to": before.version if before else None}
                try:
                    mv = self._registry_version(alias)
                except Exception as exc:  # registry unreachable: keep what we have
                    errors.append(f"{alias}: registry: {exc}")
                    report[alias] = {**entry, "changed": False, "error": redact(str(exc))}
                    continue
                if mv is None:
                    if alias == CHALLENGER:
                        new.pop(alias, None)
                        entry["to"] = None
                    else:  # no champion in the registry: keep serving the one loaded, if any
                        errors.append(f"{self.name} has no '{CHAMPION}' alias in the registry")
                elif force or before is None or before.version != str(mv.version):
                    try:
                        new[alias] = self._load(alias, mv)
                        entry["to"] = new[alias].version
                    except Exception as exc:
                        log.exception("loading %s v%s (%s) failed", self.name, mv.version, alias)
                        errors.append(f"{alias} v{mv.version}: {type(exc).__name__}: {exc}")
                        report[alias] = {**entry, "changed": False, "error": redact(str(exc))}
                        continue
                report[alias] = {**entry, "changed": entry["from"] != entry["to"]}
            self._models = new  # one assignment: readers see the old mapping or the new one
            self.last_error = redact("; ".join(errors)) or None
            self.last_check = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            if any(r.get("changed") for r in report.values()):
                self.reloads += 1
            return report

    # ---------------------------------------------------------------- background poll

    def start(self) -> None:
        """Load now (in the background, so the server answers /readyz 503 meanwhile) and poll."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="stockml-model-poll", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.wait(delay):
            try:
                self.refresh()
            except Exception:
                log.exception("model refresh failed")
            if self.champion is None:
                delay = min(self.poll_s, 5.0) if self.poll_s > 0 else 5.0  # keep trying until ready
            elif self.poll_s > 0:
                delay = self.poll_s
            else:
                return  # polling disabled: only POST /admin/reload from now on
