"""Classification scored against the demo catalogue's ground truth (accuracy, not timing)."""

import pandas as pd
import pytest

from training.classification.classes import abc_classes, demand_patterns, xyz_classes
from training.classification.classify import classify
from training.data.demo import generate_catalogue
from training.data.validate import validate
from training.data.weekly import to_weekly_demand


@pytest.fixture(scope="module")
def classified():
    cat = generate_catalogue(1000, 156, 42)
    r = validate(cat.products, cat.movements, today=pd.Timestamp("2026-11-23"))
    demand = to_weekly_demand(r.movements)
    return classify(demand, r.products), cat.truth_frame()


def test_intermittent_and_lumpy_detection(classified):
    classes, truth = classified
    predicted = classes["pattern"].isin(["intermittent", "lumpy"])
    actual = truth["pattern"].reindex(classes.index).isin(["intermittent", "lumpy"])
    precision = (predicted & actual).sum() / predicted.sum()
    recall = (predicted & actual).sum() / actual.sum()
    assert precision >= 0.90 and recall >= 0.90, (precision, recall)


def test_anomalous_products_flagged(classified):
    classes, truth = classified
    injected = truth["anomaly"].reindex(classes.index).notna()
    flagged = classes["is_anomaly"]
    assert (flagged & injected).sum() / injected.sum() >= 0.95
    assert (flagged & ~injected).sum() / (~injected).sum() <= 0.10
    reasons = classes.loc[flagged, "anomaly_reasons"]
    assert (reasons.str.len() > 0).all()
    assert reasons.str.contains("largest week|level shift").mean() > 0.9


def test_every_sku_gets_a_full_record(classified):
    classes, truth = classified
    assert len(classes) == len(truth)
    cols = ["abc", "xyz", "pattern", "adi", "cv2", "kmeans_cluster", "dbscan_cluster", "anomaly_score"]
    assert classes[cols].notna().all().all()
    assert classes["kmeans_cluster"].nunique() >= 2
    assert set(classes["abc"]) == {"A", "B", "C"}


def test_abc_xyz_and_pattern_rules_by_hand():
    rev = pd.Series({"a": 50.0, "b": 30.0, "c": 12.0, "d": 5.0, "e": 3.0})
    assert abc_classes(rev).to_dict() == {"a": "A", "b": "A", "c": "B", "d": "C", "e": "C"}
    assert abc_classes(rev, (0.5, 0.9)).to_dict() == {"a": "A", "b": "B", "c": "C", "d": "C", "e": "C"}
    cv = pd.Series({"x": 0.2, "y": 0.8, "z": 1.5})
    assert xyz_classes(cv).to_dict() == {"x": "X", "y": "Y", "z": "Z"}
    adi = pd.Series({"s": 1.0, "e": 1.1, "i": 2.0, "l": 3.0})
    cv2 = pd.Series({"s": 0.2, "e": 0.9, "i": 0.3, "l": 0.7})
    assert demand_patterns(adi, cv2).to_dict() == {"s": "smooth", "e": "erratic", "i": "intermittent", "l": "lumpy"}
