"""Fast checks of the bandit benchmark (bench/bandit.py) on a handful of runs.

Why: RESULTS.md quotes this benchmark's promotion rates, so it must drive the service's real rule
and its JSON must say what it measured. Each check names the bug it catches.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import bandit as bb
from serving.bentos import bandit as bd
from stockml.settings_serving import BanditSettings

SMALL = {"max_outcomes": 600, "feedback_batch": 25}


@pytest.fixture(scope="module")
def catalogue() -> bb.Catalogue:
    return bb.Catalogue.build(seed=3, n=50)


def test_scales_are_the_services_mase_scale(catalogue):
    # Bug caught: a benchmark scale that is not the service's (e.g. the level instead of the
    # week-to-week change) would make its rewards, and so its rates, not the service's.
    rng = np.random.default_rng(3)
    rates = bb.MEDIAN_RATE * np.exp(bb.RATE_SIGMA * rng.standard_normal(50))
    first = rng.poisson(rates[0], bb.HISTORY_WEEKS).astype(float)
    assert catalogue.scales[0] == bd.mase_scale(first)
    assert np.allclose(catalogue.rates, rates)


def test_continuous_rewards_are_the_services_and_bernoulli_keep_their_mean(catalogue):
    # Bug caught: a reward outside (0, 1] or a coin flip with another mean than the continuous reward
    # would compare two different challengers instead of two reward kinds.
    draws = bb.Outcomes(catalogue, 0.5, "continuous", np.random.default_rng(2))
    rs = np.array([draws.draw() for _ in range(4000)])
    assert ((rs > 0) & (rs <= 1)).all() and len(np.unique(rs)) > 100
    flips = bb.Outcomes(catalogue, 0.5, "bernoulli", np.random.default_rng(2))
    fs = np.array([flips.draw() for _ in range(4000)])
    assert set(np.unique(fs)) <= {0.0, 1.0}
    assert abs(fs.mean() - rs.mean()) < 0.03  # same model, same mean (s.e. of the difference ~0.009)
    with pytest.raises(ValueError):
        bb.Outcomes(catalogue, 0.5, "gaussian", np.random.default_rng(0))


def test_smaller_forecast_errors_earn_more_reward(catalogue):
    # Bug caught: the challenger factor applied the wrong way round (or not at all) would label a worse
    # challenger "better".
    means = {f: bb.mean_reward(catalogue, f, "continuous", seed=5, n=3000) for f in (0.5, 1.0, 1.6)}
    assert means[0.5] > means[1.0] + 0.02 > means[1.6] + 0.04


def test_a_run_follows_the_services_rule(catalogue):
    # Bug caught: a promotion before min_outcomes challenger outcomes, or thresholds that are not
    # monotone (a higher P_PROMOTE promoting earlier than a lower one on the same traffic).
    config = BanditSettings(min_outcomes=100)
    res = bb.simulate(11, catalogue, 0.5, "continuous", (0.9, 0.95, 0.99), config, **SMALL)
    assert set(res) == {0.9, 0.95, 0.99}
    for r in res.values():
        assert r.decision in {"promote", "stop", "explore"}
        assert r.outcomes % SMALL["feedback_batch"] == 0 and r.outcomes <= SMALL["max_outcomes"]
        if r.decision == "promote":
            assert r.challenger_n >= config.min_outcomes
    promoted = [res[t].outcomes for t in (0.9, 0.95, 0.99) if res[t].decision == "promote"]
    assert promoted == sorted(promoted)
    # the same seed gives the same run
    assert bb.simulate(11, catalogue, 0.5, "continuous", (0.9, 0.95, 0.99), config, **SMALL) == res


def test_rates_separate_a_better_from_a_worse_challenger():
    # Bug caught: a rule or simulation that ignores the rewards (the same rates whatever the challenger)
    # or an arm mix-up (the worse challenger promoted). 8 runs each, a lower minimum, 2,000 outcomes.
    config = BanditSettings(min_outcomes=100)
    scenarios = {"better": 0.3, "worse": 2.5}
    report = bb.run_benchmark(8, (0.95,), 2000, 25, config=config, kinds=("continuous",), scenarios=scenarios)
    cells = {c["scenario"]: c for c in report["cells"]}
    assert cells["better"]["promote_rate"] >= 0.75 and cells["better"]["stop_rate"] == 0
    assert cells["worse"]["stop_rate"] >= 0.75 and cells["worse"]["promote_rate"] == 0
    for c in cells.values():
        assert c["promote_rate"] + c["stop_rate"] + c["explore_rate"] == pytest.approx(1.0)
    assert report["config"]["bandit_settings"]["min_outcomes"] == 100
    assert "| continuous | better (0.3) |" in bb.table(report)


def test_cli_writes_the_json(tmp_path):
    # Bug caught: a CLI that prints figures but writes no (or different) JSON for RESULTS.md to quote.
    out = tmp_path / "bandit.json"
    report = bb.main(
        ["--runs", "2", "--thresholds", "0.95", "--max-outcomes", "100", "--reward-draws", "500", "--out", str(out)]
    )
    written = json.loads(out.read_text())
    assert written["cells"] == report["cells"] and len(written["cells"]) == 6  # 2 kinds x 3 scenarios
    assert written["config"]["bandit_settings"] == BanditSettings().model_dump()
    assert written["command"].startswith("python -m bench.bandit --runs 2")
