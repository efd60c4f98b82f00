"""The classification benchmark (bench/classification.py): its scores on a hand-made case, and its JSON.

Why: RESULTS.md quotes these percentages; a swapped precision/recall or an anomaly share over the wrong
denominator would print plausible but wrong figures.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.classification import main, score


def test_score_by_hand():
    # Bug caught: precision and recall swapped, or flag shares divided by all SKUs instead of each group.
    idx = [f"s{i}" for i in range(6)]
    classes = pd.DataFrame(
        {
            "pattern": ["lumpy", "intermittent", "smooth", "lumpy", "erratic", "smooth"],
            "is_anomaly": [True, False, False, True, False, False],
        },
        index=idx,
    )
    truth = pd.DataFrame(
        {
            "pattern": ["lumpy", "smooth", "smooth", "intermittent", "intermittent", "smooth"],
            "anomaly": ["shift", None, None, None, "spike", None],
        },
        index=idx,
    )
    s = score(classes, truth)
    assert s["slow_precision"] == pytest.approx(2 / 3)  # 3 predicted slow, 2 of them truly slow
    assert s["slow_recall"] == pytest.approx(2 / 3)  # 3 truly slow (s0, s3, s4), 2 found
    assert s["injected_anomalies"] == 2 and s["injected_flagged_share"] == pytest.approx(0.5)
    assert s["normal_flagged_share"] == pytest.approx(1 / 4)  # s3 of the 4 normal SKUs


def test_cli_writes_the_json(tmp_path):
    # Bug caught: figures printed but not written (or written for other seeds) for RESULTS.md to quote.
    out = tmp_path / "c.json"
    report = main(["--skus", "40", "--weeks", "104", "--seeds", "3", "--repeats", "1", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["seeds"] == report["seeds"] and [s["seed"] for s in written["seeds"]] == [3]
    assert 0 < written["seeds"][0]["slow_recall"] <= 1 and written["seeds"][0]["skus"] == 40
