"""bench/RESULTS.md's published-instance tables are what bench.rl_inventory wrote (not typed by hand)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.rl_inventory import markdown_table

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", ["rl_zipkin_L4", "rl_backorder_L2"])
def test_results_doc_tables_are_the_json_they_quote(name):
    # Bug caught: a cost typed or rounded by hand, or a table left from an earlier run of the command.
    report = json.loads((ROOT / "bench" / "results" / f"{name}.json").read_text())
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    assert report["command"] in results
    assert markdown_table(report) in results
