"""The weekly report's HTML: a chart per section with data, a plain note per empty one, offline plotly.js."""

from __future__ import annotations

import datetime as dt
import json
import re

import pandas as pd
import pytest

from monitoring.weekly_report import WeeklyFrames, render

START, END = dt.date(2026, 9, 14), dt.date(2026, 12, 6)


def _frames(**overrides: pd.DataFrame) -> WeeklyFrames:
    weeks = pd.date_range("2026-10-05", periods=3, freq="W-MON")
    frames = {
        "accuracy": pd.DataFrame(
            {"ds": list(weeks) * 2, "pattern": ["smooth"] * 3 + ["lumpy"] * 3, "mase": [0.8, 0.9, 1.1, 1.4, 1.2, 1.3]}
        ),
        "drift": pd.DataFrame({"ds": weeks, "drift_share": [0.0, 0.5, 1.0]}),
        "traffic": pd.DataFrame(
            {"ds": list(weeks) * 2, "alias": ["champion"] * 3 + ["challenger"] * 3, "requests": [9, 8, 5, 1, 2, 5]}
        ),
        "decisions": pd.DataFrame(
            {
                "created_at": [pd.Timestamp("2026-10-20", tz="UTC")],
                "action": ["promote"],
                "champion_version": ["1"],
                "challenger_version": ["2"],
                "p_better": [0.97],
            }
        ),
        "costs": pd.DataFrame(
            {
                "cutoff_week": ["2026-11-22"] * 3,
                "policy": ["base_stock", "rl_agent", "rl_agent"],
                "expected_cost_per_period": [3.0, 1.0, 1.5],
            }
        ),
        "evaluation": pd.DataFrame(
            {
                "pattern": ["smooth", "smooth", "smooth", "smooth"],
                "policy": ["base_stock", "base_stock", "rl_agent", "rl_agent"],
                "cost_per_period": [4.0, 6.0, 3.0, 4.0],
            }
        ),
    }
    return WeeklyFrames(**{**frames, **overrides})


def _plots(page: str) -> list[str]:
    """The Plotly.newPlot calls' figure JSON, one per chart."""
    return re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, flags=re.S)


def test_every_section_has_its_charts_and_the_page_works_offline():
    page = render(_frames(), START, END)
    assert len(_plots(page)) == 7  # accuracy bar + line, drift, bandit traffic + decisions, costs + evaluation
    for title in (
        "MASE by demand pattern, week of 2026-10-19",
        "MASE by demand pattern over time",
        "Share of drifted columns over time",
        "Share of forecast requests per alias",
        "Bandit decisions",
        "Expected cost per week of the recommended orders, by the policy chosen",
        "Cost per week on the held-out year, every policy on every SKU",
    ):
        assert title in page
    assert "No " not in re.sub(r"<script.*?</script>", "", page, flags=re.S)  # no section is empty
    assert '<script src="http' not in page and "plotly.js v" in page  # plotly.js inline, opens offline
    assert "week ending 2026-12-06" in page


def _traces(page: str) -> list[list[dict]]:
    return [json.loads(p) for p in _plots(page)]


def test_the_charts_carry_the_frames_values():
    charts = _traces(render(_frames(), START, END))
    # the costs chart sums a policy's SKUs: rl_agent 1.0 + 1.5
    costs = {t["name"]: t["y"] for t in charts[5]}
    assert costs == {"base_stock": [3.0], "rl_agent": [2.5]}
    # the held-out evaluation: mean cost per SKU of each policy
    assert {t["name"]: t["y"] for t in charts[6]} == {"base_stock": [5.0], "rl_agent": [3.5]}
    # the traffic chart plots shares per week: 1/10, 2/10, 5/10 for the challenger
    traffic = {t["name"]: t["y"] for t in charts[3]}
    assert traffic["challenger"] == pytest.approx([0.1, 0.2, 0.5])
    # the latest week's MASE per pattern: smooth 1.1, lumpy 1.3
    assert {t["name"]: t["y"][0] for t in charts[0]} == pytest.approx({"smooth": 1.1, "lumpy": 1.3})


def test_an_empty_frame_says_so_instead_of_an_empty_chart():
    empty = pd.DataFrame(columns=["cutoff_week", "policy", "expected_cost_per_period"])
    page = render(_frames(costs=empty), START, END)
    assert "No order recommendations yet." in page
    assert len(_plots(page)) == 6


def test_a_frame_without_its_columns_is_a_clear_error():
    with pytest.raises(ValueError, match=r"frame 'drift' lacks columns \['drift_share'\]"):
        _frames(drift=pd.DataFrame({"ds": [], "share": []}))
