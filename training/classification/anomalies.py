"""Anomalous products by Isolation Forest, with the reasons that made each one stand out.

The forest looks at signals of data or demand behaving unlike the rest of the catalogue:
an extreme one-off week (largest sale against the product's own upper-quartile sale) and a
sudden sustained level shift (largest two-sample t statistic over split points). Reasons
are the signals whose robust z-score (median/MAD over the catalogue) is largest.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

SIGNALS = {
    "spike_ratio": "largest week is {value:.1f}x the product's upper-quartile week (catalogue median {median:.1f}x)",
    "level_shift": "sustained level shift, t statistic {value:.1f} (catalogue median {median:.1f})",
}


def anomaly_scores(stats: pd.DataFrame, contamination: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Return ``anomaly_score`` (higher = more anomalous), ``is_anomaly`` and ``anomaly_reasons``."""
    cols = list(SIGNALS)
    x = np.log1p(stats[cols].clip(lower=0).to_numpy(dtype=float))
    out = pd.DataFrame(index=stats.index)
    if len(stats) < 10:
        out["anomaly_score"], out["is_anomaly"], out["anomaly_reasons"] = 0.0, False, ""
        return out
    forest = IsolationForest(n_estimators=300, contamination=contamination, random_state=seed).fit(x)
    out["anomaly_score"] = -forest.score_samples(x)  # the paper's score: ~0.5 normal, → 1 anomalous
    out["is_anomaly"] = forest.predict(x) == -1
    med = np.median(x, axis=0)
    mad = np.median(np.abs(x - med), axis=0) * 1.4826 + 1e-9
    z = (x - med) / mad
    raw_median = stats[cols].median()
    reasons = []
    for i, flagged in enumerate(out["is_anomaly"].to_numpy()):
        if not flagged:
            reasons.append("")
            continue
        order = np.argsort(-z[i])
        texts = [
            SIGNALS[cols[j]].format(value=stats[cols[j]].iloc[i], median=raw_median[cols[j]])
            for j in order
            if z[i, j] > 2
        ]
        reasons.append("; ".join(texts) or "unusual combination of demand signals")
    out["anomaly_reasons"] = reasons
    return out
