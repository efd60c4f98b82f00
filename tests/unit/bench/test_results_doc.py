"""README and bench/RESULTS.md quote only what a bench command wrote into bench/results/.

Why: a figure typed by hand, or left behind after a re-run, reads exactly like a measured one. These
checks fail when a quoted JSON file is missing (not committed), when a quoted ``python -m bench.X``
command names no module, and when the tables generated from a JSON were edited by hand or are stale.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import bandit, classification, router_demo, router_members_demo

ROOT = Path(__file__).resolve().parents[3]
DOCS = {name: (ROOT / name).read_text() for name in ("README.md", "bench/RESULTS.md")}
RESULTS = DOCS["bench/RESULTS.md"]
# Known and owned elsewhere: README's serving performance paragraph (being reworked with the serving
# benchmark of issue 11) quotes a batch time from a JSON that was never committed. Listed so the check
# stays strict for everything else; the test below fails as soon as the entry is fixed, so it cannot go stale.
PENDING: set[tuple[str, str]] = set()  # (doc, result file) quoted before its JSON is committed


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_quoted_result_file_is_committed(doc):
    # Bug caught: a figure quoted from a JSON that was left in /tmp (never committed).
    named = set(re.findall(r"bench/results/([\w.\-]+\.json)", DOCS[doc]))
    missing = sorted(n for n in named if not (ROOT / "bench" / "results" / n).is_file() and (doc, n) not in PENDING)
    assert not missing, f"{doc} quotes result files that are not in bench/results/: {missing}"


def test_pending_entries_are_still_pending():
    # Keeps PENDING honest: an entry whose file was committed or whose quote was removed must leave the list.
    for doc, name in PENDING:
        assert f"bench/results/{name}" in DOCS[doc] and not (ROOT / "bench" / "results" / name).is_file(), (
            f"remove {(doc, name)} from PENDING"
        )


@pytest.mark.parametrize("doc", sorted(DOCS))
def test_every_quoted_bench_command_exists(doc):
    # Bug caught: a command renamed or removed while the figures it made stay quoted.
    modules = set(re.findall(r"python -m bench\.(\w+)", DOCS[doc]))
    assert modules, f"{doc} quotes no bench command"
    missing = sorted(m for m in modules if not (ROOT / "bench" / f"{m}.py").is_file())
    assert not missing, f"{doc} quotes bench commands that do not exist: {missing}"


def _quoted(pattern: str) -> dict:
    m = re.search(pattern, RESULTS)
    assert m, f"RESULTS.md does not quote {pattern}"
    return json.loads((ROOT / "bench" / "results" / m.group(1)).read_text())


def test_bandit_table_is_the_json_it_quotes():
    # Bug caught: a promotion rate typed or rounded by hand, or a table left from an earlier run.
    report = _quoted(r"python -m bench\.bandit [^`]*--out bench/results/(bandit_[\w\-]+\.json)")
    assert bandit.table(report) in RESULTS


def test_classification_table_is_the_json_it_quotes():
    # Bug caught: as above, for the classification percentages and the feature time.
    report = _quoted(r"python -m bench\.classification [^`]*--out bench/results/(classification_[\w\-]+\.json)")
    assert classification.table(report) in RESULTS
    assert classification.cluster_table(report) in RESULTS  # the clusters' ARI against the planted truth


def test_router_demo_table_is_the_json_it_quotes():
    # Bug caught: as above, for the router's accuracy figures and the AutoML wall time.
    report = _quoted(r"python -m bench\.router_demo [^`]*--out bench/results/(router_demo_[\w\-]+\.json)")
    assert router_demo.table(report) in RESULTS


def test_router_members_demo_tables_are_the_json_they_quote():
    # Bug caught: as above, for the router with vs without the new members (MASE, tests, times, choices).
    names = re.findall(
        r"python -m bench\.router_members_demo [^`]*--out bench/results/(router_members_demo_[\w\-]+\.json)", RESULTS
    )
    assert len(names) >= 2, "RESULTS.md quotes the 300- and the 1,000-SKU runs"
    for name in names:
        report = json.loads((ROOT / "bench" / "results" / name).read_text())
        assert router_members_demo.table(report) in RESULTS, name


def test_scale_table_is_the_json_it_quotes():
    # Bug caught: a stage time typed by hand, or the table of an earlier run left beside a new JSON.
    from bench import scale

    report = _quoted(r"python -m bench\.scale [^`]*--out bench/results/(scale[\w\-]*\.json)")
    assert scale.markdown_table(report) in RESULTS


def test_spark_scale_table_is_the_json_it_quotes():
    # Bug caught: the 30,000-SKU Spark figures typed by hand, or an older run's table beside a new JSON.
    from bench import scale_spark

    report = _quoted(r"python -m bench\.scale_spark --skus 3000,30000 [^`]*--out bench/results/(scale_spark\.json)")
    assert len(report["runs"]) == 2 and report["exponents"]
    assert scale_spark.markdown_table(report) in RESULTS


def test_fixed_champion_inference_table_is_the_json_it_quotes():
    # Bug caught: the fixed-model inference curve typed by hand, or left beside a newer JSON.
    from bench import scale_inference

    report = _quoted(r"python -m bench\.scale_inference [^`]*--out bench/results/(scale_inference\.json)")
    assert scale_inference.markdown_table(report) in RESULTS
