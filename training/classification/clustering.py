"""K-means and DBSCAN clusters of products on standardised series features.

Why both: K-means gives every product a segment (useful for reporting and as a router
feature); DBSCAN finds dense families and leaves outliers unassigned (label -1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, KMeans
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

CLUSTER_FEATURES = ["log_mean", "log_adi", "cv2", "zero_share", "recent_cv", "log_weeks"]


def cluster_matrix(stats: pd.DataFrame) -> np.ndarray:
    f = pd.DataFrame(
        {
            "log_mean": np.log1p(stats["mean"]),
            "log_adi": np.log(stats["adi"].clip(lower=1)),
            "cv2": stats["cv2"].clip(upper=5),
            "zero_share": stats["zero_share"],
            "recent_cv": stats["recent_cv"].replace(np.inf, 5).clip(upper=5),
            "log_weeks": np.log(stats["n_weeks"].clip(lower=1)),
        },
        index=stats.index,
    )
    return StandardScaler().fit_transform(f[CLUSTER_FEATURES].to_numpy())


def kmeans_clusters(x: np.ndarray, k_range: range = range(2, 9), seed: int = 0) -> np.ndarray:
    """K-means with k chosen by silhouette score (on a sample for large catalogues)."""
    n = len(x)
    if n < 3:
        return np.zeros(n, dtype=int)
    best_labels, best_score = np.zeros(n, dtype=int), -np.inf
    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, 2000), replace=False)
    for k in k_range:
        if k >= n:
            break
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
        if len(np.unique(labels[sample])) < 2:
            continue
        score = silhouette_score(x[sample], labels[sample])
        if score > best_score:
            best_labels, best_score = labels, score
    return best_labels


def dbscan_clusters(x: np.ndarray, min_samples: int = 5, quantile: float = 0.9) -> np.ndarray:
    """DBSCAN with eps from the k-distance curve (the given quantile of k-NN distances)."""
    n = len(x)
    if n <= min_samples:
        return np.full(n, -1, dtype=int)
    dist, _ = NearestNeighbors(n_neighbors=min_samples).fit(x).kneighbors(x)
    eps = float(np.quantile(dist[:, -1], quantile)) or 1e-6
    return DBSCAN(eps=eps, min_samples=min_samples).fit_predict(x)
