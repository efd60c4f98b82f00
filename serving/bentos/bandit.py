"""Thompson sampling between the champion and the challenger: pure functions, no I/O.

Each model version has a Beta(alpha, beta) posterior over its mean *reward* (prior Beta(1, 1)).
A served forecast point that later gets its actual scores

    reward = 1 / (1 + |y - yhat| / scale)        in (0, 1]

where ``scale`` is the MASE scale of the history the forecast was made from (mean absolute
week-to-week change; 1 when that is 0). 1 is a perfect forecast, 0.5 an error of one typical
weekly move, and the reward is bounded whatever the SKU's volume, so SKUs are comparable and one
outlier cannot dominate. The posterior gets the fractional Bernoulli update alpha += r,
beta += 1 - r. With continuous rewards this is conservative: the posterior is as wide as if every
outcome were a coin flip with the same mean, which has the largest variance a [0, 1] reward can have.

Decision rule (:func:`decide`), evaluated after feedback:

- ``P(challenger better)`` = Monte-Carlo probability (seeded, so a posterior always gives the
  same figure) that a Beta(challenger) draw exceeds a Beta(champion) draw.
- promote when P > ``p_promote`` (0.95) and the challenger has >= ``min_outcomes`` outcomes;
- stop routing to the challenger when P < ``p_stop`` (0.05) and the challenger has >=
  ``min_stop_outcomes`` outcomes (default a quarter of ``min_outcomes``: Thompson sampling starves
  a clearly worse arm, so it may never reach the promotion minimum; stopping is the safe direction);
- otherwise keep exploring.

Under Thompson sampling the challenger's traffic share *is* P(challenger better) (a request goes
to the arm whose posterior draw is higher), so :func:`traffic_shares` reports that, or 0 once stopped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from training.forecasting.metrics import mase_scale as library_mase_scale

PRIOR = (1.0, 1.0)
MC_DRAWS = 20_000
MC_SEED = 20261125


@dataclass(frozen=True)
class Posterior:
    """Beta posterior of one model version's mean reward, and how many outcomes fed it."""

    alpha: float = PRIOR[0]
    beta: float = PRIOR[1]
    n: int = 0

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    def update(self, rewards: Iterable[float]) -> Posterior:
        a, b, n = self.alpha, self.beta, self.n
        for r in rewards:
            r = min(1.0, max(0.0, float(r)))
            a, b, n = a + r, b + 1.0 - r, n + 1
        return Posterior(a, b, n)

    def as_dict(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta, "n": self.n, "mean": self.mean}


@dataclass(frozen=True)
class Decision:
    action: str  # "promote" | "stop" | "explore"
    p_better: float
    reason: str


UNDEFINED_SCALE = 1.0  # the scale of a history whose naive scale is 0 or undefined (a constant history)


def mase_scale(history: Iterable[float]) -> float:
    """The library's lag-1 MASE scale (:func:`training.forecasting.metrics.mase_scale`) of a weekly, regular
    series; :data:`UNDEFINED_SCALE` when it is 0 or undefined. A reward must exist for every served
    forecast, so such a history is scored on the absolute error (the guardrail's ``mean_mase`` leaves
    those series out instead: it averages over series, the bandit over outcomes)."""
    s = library_mase_scale(np.asarray(list(history) if not isinstance(history, np.ndarray) else history, float))
    return s if np.isfinite(s) and s > 0 else UNDEFINED_SCALE


def reward(y: float, yhat: float | None, scale: float) -> float:
    """1 / (1 + |y - yhat| / scale) in (0, 1]; a missing forecast scores as yhat = 0."""
    scale = scale if scale and np.isfinite(scale) and scale > 0 else UNDEFINED_SCALE
    err = abs(float(y) - float(yhat or 0.0)) / scale
    return 1.0 / (1.0 + err)


def prob_better(champion: Posterior, challenger: Posterior, draws: int = MC_DRAWS, seed: int = MC_SEED) -> float:
    """P(Beta(challenger) draw > Beta(champion) draw), Monte Carlo with a fixed seed."""
    rng = np.random.default_rng(seed)
    c = rng.beta(challenger.alpha, challenger.beta, draws)
    h = rng.beta(champion.alpha, champion.beta, draws)
    return float(np.mean(c > h))


def choose(champion: Posterior, challenger: Posterior | None, rng: np.random.Generator, stopped: bool = False) -> str:
    """Thompson sampling: "challenger" when its posterior draw beats the champion's, else "champion"."""
    if challenger is None or stopped:
        return "champion"
    return (
        "challenger"
        if rng.beta(challenger.alpha, challenger.beta) > rng.beta(champion.alpha, champion.beta)
        else "champion"
    )


def traffic_shares(p_better: float | None, stopped: bool = False) -> dict[str, float]:
    if p_better is None or stopped:
        return {"champion": 1.0, "challenger": 0.0}
    return {"champion": 1.0 - p_better, "challenger": p_better}


def decide(
    champion: Posterior,
    challenger: Posterior,
    min_outcomes: int = 200,
    p_promote: float = 0.95,
    p_stop: float = 0.05,
    min_stop_outcomes: int | None = None,
    draws: int = MC_DRAWS,
    seed: int = MC_SEED,
) -> Decision:
    """What the evidence says now: promote the challenger, stop routing to it, or keep exploring."""
    min_stop = max(1, min_outcomes // 4) if min_stop_outcomes is None else min_stop_outcomes
    p = prob_better(champion, challenger, draws, seed)
    if p > p_promote and challenger.n >= min_outcomes:
        return Decision("promote", p, f"P(challenger better) {p:.3f} > {p_promote} with {challenger.n} outcomes")
    if p < p_stop and challenger.n >= min_stop:
        return Decision("stop", p, f"P(challenger better) {p:.3f} < {p_stop} with {challenger.n} outcomes")
    why = f"need {min_outcomes} challenger outcomes (have {challenger.n})" if challenger.n < min_outcomes else ""
    return Decision("explore", p, f"P(challenger better) {p:.3f}" + (f"; {why}" if why else ""))
