"""The forecasting router: an XGBoost meta-model that picks, or weights, zoo methods per SKU.

Trained on rolling-origin backtests: for every SKU we know each method's error (MASE), and the
series features say what kind of product it is. Two modes:

- ``select``: multi-class classification of the best method; the class probability is the
  confidence.
- ``combine`` (FFORMA, Montero-Manso et al. 2020): the model's raw scores go through a softmax
  to become weights over methods, trained with FFORMA's objective, the weighted error
  Σ_m w_m · err_m, so it learns to spread weight when methods are close.

Explanations come from XGBoost's own SHAP values (``pred_contribs``): the features that pushed
the chosen method's score up most, in words with their values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

FEATURE_LABELS = {
    "adi": "ADI {v:.1f}",
    "cv2": "CV² {v:.2f}",
    "zero_share": "{p:.0f} % zero weeks",
    "recent_zero_share": "{p:.0f} % zero weeks lately",
    "seasonal_strength": "seasonal strength {v:.2f}",
    "trend_strength": "trend strength {v:.2f}",
    "acf1": "lag-1 autocorrelation {v:.2f}",
    "spectral_entropy": "spectral entropy {v:.2f}",
    "length": "{v:.0f} weeks of history",
    "spikiness": "spikiness {v:.1f}",
    "recent_level_ratio": "recent level {v:.2f}x the mean",
    "cv": "CV {v:.2f}",
    "last_value_share": "last week at {p:.0f} % of the peak",
    "trend_slope": "trend {p:+.1f} % of the level per week",
    "acf_seasonal": "seasonal autocorrelation {v:.2f}",
    "max_over_nonzero_mean": "peak {v:.1f}x a typical sale",
    "stability": "stability {v:.2f}",
    "lumpiness": "lumpiness {v:.2f}",
}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class ForecastRouter:
    """Choose (``select``) or weight (``combine``) forecasting methods per SKU from its features."""

    mode: str = "select"
    n_estimators: int = 200
    max_depth: int = 4
    learning_rate: float = 0.05
    subsample: float = 0.9
    colsample_bytree: float = 0.8
    min_child_weight: float = 1.0
    seed: int = 0
    # One OpenMP thread: the meta-model's data is small, and with other work on a 2-core
    # machine XGBoost's spinning threads made a 3 s fit take 100 s (measured).
    n_threads: int = 1
    methods_: list[str] = field(default_factory=list, init=False)
    features_: list[str] = field(default_factory=list, init=False)
    booster_: xgb.Booster | None = field(default=None, init=False, repr=False)

    def params(self) -> dict:
        """The hyper-parameters (what AutoML tunes and MLflow logs)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def _params(self) -> dict:
        return {
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "num_class": len(self.methods_),
            "seed": self.seed,
            "nthread": self.n_threads,
            "verbosity": 0,
        }

    def fit(self, features: pd.DataFrame, errors: pd.DataFrame) -> ForecastRouter:
        """``errors``: row × method error table (see :func:`training.router.train.window_errors`), aligned on rows."""
        if self.mode not in ("select", "combine"):
            raise ValueError(f"mode must be 'select' or 'combine', not {self.mode!r}")
        common = features.index.intersection(errors.index)
        if len(common) < 10:
            raise ValueError(f"the router needs at least 10 SKUs with backtest errors, got {len(common)}")
        x, e = features.loc[common], errors.loc[common]
        self.methods_, self.features_ = list(e.columns), list(x.columns)
        dtrain = xgb.DMatrix(x.to_numpy(dtype=float), feature_names=self.features_)
        params = self._params()
        err = e.to_numpy(dtype=float)
        # Errors relative to each SKU's typical method, capped: products of every scale weigh alike
        # and one catastrophic method on one SKU cannot dominate the fit.
        rel = np.clip(err / np.maximum(np.median(err, axis=1, keepdims=True), 1e-9), 0, 10)
        if self.mode == "select":
            dtrain.set_label(np.argmin(err, axis=1))
            # Weight each SKU by what a wrong choice costs there (its regret spread).
            dtrain.set_weight(np.maximum(rel.mean(axis=1) - rel.min(axis=1), 1e-3))
            self.booster_ = xgb.train({**params, "objective": "multi:softprob"}, dtrain, self.n_estimators)
        else:
            err = rel

            def fforma(predt: np.ndarray, _: xgb.DMatrix) -> tuple[np.ndarray, np.ndarray]:
                p = _softmax(predt.reshape(len(err), -1))
                loss = (p * err).sum(axis=1, keepdims=True)
                grad = p * (err - loss)
                hess = np.maximum(p * (1 - p) * np.abs(err - loss), 1e-6)
                return grad, hess

            self.booster_ = xgb.train(
                {**params, "disable_default_eval_metric": 1}, dtrain, self.n_estimators, obj=fforma
            )
        return self

    def save_state(self, folder: Path) -> dict:
        """The meta-model as XGBoost JSON plus its parameters, methods and features (JSON)."""
        if self.booster_ is None:
            raise RuntimeError("fit the router before saving it")
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(folder / "booster.json")
        return {
            "params": self.params(),
            "methods": self.methods_,
            "features": self.features_,
            "booster": "booster.json",
        }

    @classmethod
    def from_state(cls, folder: Path, state: dict) -> ForecastRouter:
        router = cls(**state["params"])
        router.methods_, router.features_ = list(state["methods"]), list(state["features"])
        router.booster_ = xgb.Booster()
        router.booster_.load_model(folder / state["booster"])
        return router

    def _dmatrix(self, features: pd.DataFrame) -> xgb.DMatrix:
        missing = [c for c in self.features_ if c not in features.columns]
        if missing:
            raise ValueError(f"features missing for the router: {missing}")
        return xgb.DMatrix(features[self.features_].to_numpy(dtype=float), feature_names=self.features_)

    def weights(self, features: pd.DataFrame) -> pd.DataFrame:
        """SKU × method weights (class probabilities in ``select`` mode, FFORMA weights otherwise)."""
        if self.booster_ is None:
            raise RuntimeError("fit the router first")
        raw = self.booster_.predict(self._dmatrix(features), output_margin=True).reshape(len(features), -1)
        return pd.DataFrame(_softmax(raw), index=features.index, columns=self.methods_)

    def explain(self, features: pd.DataFrame, top: int = 3, weights: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per SKU: chosen method, confidence and a sentence built from SHAP contributions.

        ``weights``: :meth:`weights` of these ``features`` when the caller has them (not predicted twice)."""
        w = self.weights(features) if weights is None else weights
        chosen = w.idxmax(axis=1).to_numpy()
        contribs = self.booster_.predict(self._dmatrix(features), pred_contribs=True)  # (n, classes, f+1)
        k = np.array([self.methods_.index(m) for m in chosen], dtype=int).reshape(-1)
        own = contribs[np.arange(len(features)), k, :-1]  # each SKU's contributions to its chosen method
        conf = w.to_numpy(dtype=float)[np.arange(len(features)), k]
        rows = []
        # One plain dict per SKU (not a pandas row: building those was most of this loop's time).
        for i, row in enumerate(features.to_dict("records")):
            c = own[i]
            lead, shown = self._pattern_phrase(row)
            order = [j for j in np.argsort(-c) if c[j] > 0 and self.features_[j] not in shown][:top]
            reasons = [self._describe(self.features_[j], float(row[self.features_[j]])) for j in order]
            because = "; ".join([*lead, *reasons]) if lead or reasons else "no single feature stands out"
            rows.append(
                {
                    "unique_id": features.index[i],
                    "method": chosen[i],
                    "confidence": float(conf[i]),
                    "explanation": f"{chosen[i]} (confidence {conf[i]:.2f}) because {because}",
                }
            )
        return pd.DataFrame(rows).set_index("unique_id")

    @staticmethod
    def _pattern_phrase(row: Mapping[str, Any]) -> tuple[list[str], set[str]]:
        """'demand is lumpy: ADI 3.1, CV² 0.90; 41 % zero weeks' when the features carry the pattern.

        Planners read the Syntetos-Boylan pattern first, so it leads; the SHAP reasons that follow
        skip the features already named here.
        """
        patterns = [c[3:] for c in ("is_smooth", "is_erratic", "is_intermittent", "is_lumpy") if row.get(c, 0) >= 0.5]
        if not patterns or "adi" not in row or "cv2" not in row:
            return [], set()
        text = f"demand is {patterns[0]}: ADI {row['adi']:.1f}, CV² {row['cv2']:.2f}"
        if "zero_share" in row:
            text += f", {100 * row['zero_share']:.0f} % zero weeks"
        shown = {"adi", "cv2", "zero_share", "is_smooth", "is_erratic", "is_intermittent", "is_lumpy"}
        return [text], shown

    @staticmethod
    def _describe(name: str, value: float) -> str:
        if name.startswith("is_") and value >= 0.5:
            return f"demand is {name[3:]}"
        template = FEATURE_LABELS.get(name)
        if template:
            return template.format(v=value, p=100 * value)
        return f"{name.replace('_', ' ')} {value:.3g}"

    def expected_error(self, features: pd.DataFrame, errors: pd.DataFrame) -> pd.Series:
        """Each SKU's error under the router: the chosen method's (select) or the weighted one (combine)."""
        w = self.weights(features).reindex(columns=errors.columns)
        e = errors.loc[features.index]
        if self.mode == "select":
            pick = w.to_numpy().argmax(axis=1)
            return pd.Series(e.to_numpy()[np.arange(len(e)), pick], index=e.index)
        return (w * e).sum(axis=1)
