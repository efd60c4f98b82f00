"""Classify: ABC/XYZ, demand pattern, clusters and anomalies per SKU (``stock_classes``)."""

from __future__ import annotations

import pandas as pd

from stockml.run import Run
from stockml.steps.ingest import load_demand
from training.classification.classify import ClassifyConfig, classify


def classify_config(run: Run) -> ClassifyConfig:
    s = run.settings
    return ClassifyConfig(s.abc_cutoffs, s.xyz_cutoffs, s.adi_cutoff, s.cv2_cutoff, s.anomaly_contamination)


def classify_step(run: Run) -> pd.DataFrame:
    demand, products = load_demand(run)
    classes = classify(demand, products, classify_config(run))
    classes.to_parquet(run.layout.classes)
    run.write("stock_classes", classes.reset_index())
    return classes


def load_classes(run: Run) -> pd.DataFrame:
    return pd.read_parquet(run.layout.classes)
