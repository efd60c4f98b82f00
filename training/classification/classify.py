"""One record per SKU for ``stock_classes``: ABC, XYZ, demand pattern, clusters, yearly shape, anomalies."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from training.classification.anomalies import anomaly_scores
from training.classification.classes import abc_classes, demand_patterns, xyz_classes
from training.classification.clustering import (
    cluster_matrix,
    dbscan_clusters,
    gmm_clusters,
    hdbscan_clusters,
    kmeans_clusters,
)
from training.classification.seasonal import seasonal_clusters
from training.classification.series_stats import series_stats


@dataclass
class ClassifyConfig:
    abc_cutoffs: tuple[float, float] = (0.80, 0.95)
    xyz_cutoffs: tuple[float, float] = (0.5, 1.0)
    adi_cutoff: float = 1.32
    cv2_cutoff: float = 0.49
    anomaly_contamination: float = 0.05
    revenue_weeks: int = 52
    seed: int = 0


def classify(demand: pd.DataFrame, products: pd.DataFrame, config: ClassifyConfig | None = None) -> pd.DataFrame:
    """Classify every SKU of the weekly demand frame; index ``sku``, columns of ``stock_classes``."""
    cfg = config or ClassifyConfig()
    stats = series_stats(demand, recent_weeks=cfg.revenue_weeks)
    last = demand["ds"].max()
    recent = demand[demand["ds"] > last - pd.Timedelta(weeks=cfg.revenue_weeks)]
    price = products.set_index("sku")["unit_price"].astype(float)
    units = recent.groupby("unique_id")["y"].sum().reindex(stats.index, fill_value=0.0)
    revenue = units * price.reindex(stats.index).fillna(0.0)
    out = stats[["n_weeks", "adi", "cv2", "zero_share"]].copy()
    out["revenue"] = revenue
    out["abc"] = abc_classes(revenue, cfg.abc_cutoffs)
    out["xyz"] = xyz_classes(stats["recent_cv"], cfg.xyz_cutoffs)
    out["pattern"] = demand_patterns(stats["adi"], stats["cv2"], cfg.adi_cutoff, cfg.cv2_cutoff)
    x = cluster_matrix(stats)
    out["kmeans_cluster"] = kmeans_clusters(x, seed=cfg.seed)
    out["dbscan_cluster"] = dbscan_clusters(x)
    out["hdbscan_cluster"] = hdbscan_clusters(x)
    out["gmm_cluster"], out["gmm_probability"] = gmm_clusters(x, seed=cfg.seed)
    season = seasonal_clusters(demand, seed=cfg.seed).labels.reindex(out.index)
    out = out.join(season[["season_strength", "season_cluster", "season_profile"]])
    out = out.join(anomaly_scores(stats, cfg.anomaly_contamination, cfg.seed))
    out.index.name = "sku"
    return out
