"""bench.scale_inference's arithmetic: the exponent it reports and the table RESULTS.md quotes."""

from __future__ import annotations

import pytest

from bench.scale_inference import exponent, markdown_table, parse


def test_the_exponent_is_the_log_log_slope():
    linear = [{"skus": n, "forecast_s": 0.003 * n} for n in (1000, 3000, 10000)]
    assert exponent(linear) == 1.0
    quadratic = [{"skus": n, "forecast_s": 1e-6 * n * n} for n in (1000, 3000, 10000)]
    assert exponent(quadratic) == 2.0
    assert exponent(linear[:1]) is None  # one size fits no curve


def test_the_table_gives_seconds_and_milliseconds_per_sku():
    report = {"runs": [{"skus": 1000, "forecast_s": 2.5}, {"skus": 10000, "forecast_s": 25.0}], "exponent": 1.0}
    table = markdown_table(report)
    assert "| 1,000 | 2.5 | 2.50 |" in table and "| 10,000 | 25.0 | 2.50 |" in table
    assert table.endswith("| exponent | 1.0 | |")


def test_sizes_beyond_the_trained_catalogue_are_refused(capsys):
    with pytest.raises(SystemExit):
        parse(["--train-skus", "1000", "--skus", "1000,3000", "--out", "x.json"])
    assert "between 1 and --train-skus" in capsys.readouterr().err


def test_its_default_members_are_those_bench_scale_chose_for_10000_skus():
    # Bug caught: bench.scale re-run with a new choice while this bench still times the old members.
    import json
    from pathlib import Path

    from bench.scale_inference import CHOSEN_FOR_10000

    chosen = json.loads((Path(__file__).parents[3] / "bench/results/scale.json").read_text())["members"]
    assert sorted(CHOSEN_FOR_10000) == sorted(chosen["backtested"])
