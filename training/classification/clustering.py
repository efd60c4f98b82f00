"""K-means, DBSCAN, HDBSCAN and Gaussian-mixture clusters of products on standardised series features.

Why several: K-means gives every product a segment (useful for reporting); DBSCAN finds dense
families and leaves outliers unassigned (label -1); HDBSCAN does the same without one global
density (no ``eps`` to pick: families of different spread are found together), and a Gaussian
mixture gives elliptical segments of different sizes with a membership probability (how
clearly a product belongs to its segment), the number of components chosen by BIC.

All of them are catalogue-relative (a product's label depends on the other products), so the
forecasting router does not use them (see ``training.router.train.router_features``).
The yearly-shape clusters are in :mod:`training.classification.seasonal`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN, HDBSCAN, KMeans
from sklearn.metrics import silhouette_score
from sklearn.mixture import GaussianMixture
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


def hdbscan_clusters(x: np.ndarray, min_cluster_size: int = 10, min_samples: int = 5) -> np.ndarray:
    """HDBSCAN labels (-1 = noise: a product in no dense family). Deterministic (no random state).

    ``min_cluster_size`` is capped for small catalogues (at least 2); fewer rows than that: all noise.
    """
    n = len(x)
    size = max(2, min(min_cluster_size, n // 3))
    if n < max(size, 3):
        return np.full(n, -1, dtype=int)
    return HDBSCAN(min_cluster_size=size, min_samples=min(min_samples, size), copy=True).fit_predict(x).astype(int)


def gmm_clusters(
    x: np.ndarray, k_range: range = range(1, 13), seed: int = 0, covariance_type: str = "full"
) -> tuple[np.ndarray, np.ndarray]:
    """(labels, membership probability) of a Gaussian mixture with the number of components by BIC (1-12;
    on the demo catalogue BIC is lowest at 9).

    Components are renumbered by size (0 = largest) so labels do not depend on initialisation order.
    """
    n = len(x)
    if n < 2:
        return np.zeros(n, dtype=int), np.ones(n)
    best, best_bic = None, np.inf
    for k in k_range:
        if k > n // 2 and k > 1:
            break
        # A small ridge keeps a component from collapsing onto a few identical rows.
        gm = GaussianMixture(k, covariance_type=covariance_type, n_init=2, reg_covar=1e-3, random_state=seed).fit(x)
        bic = gm.bic(x)
        if bic < best_bic:
            best, best_bic = gm, bic
    assert best is not None
    raw = best.predict(x)
    prob = best.predict_proba(x).max(axis=1)
    order = np.argsort(-np.bincount(raw, minlength=best.n_components), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[raw].astype(int), prob
