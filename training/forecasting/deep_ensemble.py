"""Ensembles of a deep member's networks, combined by the median (the N-BEATS paper's recipe).

Oreshkin et al. (2020) reach their M4 figures not with one network but with the median of many,
trained over input sizes (2h..7h), training losses (sMAPE, MASE, MAPE) and initialisations. A
:class:`~training.forecasting.deep.NeuralMember` with an ``ensemble`` parameter does the same:

- ``ensemble`` is either a list of overrides, one dict per network (``[{"input_size": 26},
  {"input_size": 52, "loss": "smape"}]``), or a dict of lists whose Cartesian product is the list
  (``{"input_size": [26, 52], "loss": ["mae", "smape"]}`` → four networks, in that order);
- every network takes the member's own parameters with its override on top, and is trained one
  after the other on the same panel (each with its own ``random_seed``: the member's unless the
  override names one, so a fit is repeatable);
- forecasts are combined per series and step by the median: the point forecast, and each interval
  bound on its own when the networks have intervals (every one trained with ``loss="mqloss"``).
  Each network's bounds are ordered, and the median of ordered values keeps the order
  (lo95 ≤ lo80 ≤ yhat ≤ hi80 ≤ hi95). With any point-loss network the bounds are NaN (the member
  declares no native intervals, so the backtest's empirical ones are used).

An empty ``ensemble`` (the default) is the single network, exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import product

import numpy as np
import pandas as pd

# Parameters that belong to the whole member, never to one of its networks.
NOT_PER_NETWORK = frozenset({"ensemble", "refit_every", "kind", "horizon", "freq", "alias"})


def expand(spec: Mapping | Sequence | None, allowed: Iterable[str]) -> tuple[dict, ...]:
    """The ensemble as a tuple of per-network overrides (``()``: no ensemble)."""
    if not spec:
        return ()
    if isinstance(spec, Mapping):
        keys = list(spec)
        grids = [list(v) if isinstance(v, list | tuple) else [v] for v in spec.values()]
        rows = [dict(zip(keys, combo, strict=True)) for combo in product(*grids)]
    else:
        rows = []
        for row in spec:
            if not isinstance(row, Mapping):
                raise ValueError(f"ensemble must be a list of dicts or a dict of lists, got an entry {row!r}")
            rows.append(dict(row))
    accepted = set(allowed) - NOT_PER_NETWORK
    for row in rows:
        unknown = sorted(set(row) - accepted)
        if unknown:
            raise ValueError(f"ensemble overrides {unknown} are not per-network parameters: {sorted(accepted)}")
    return tuple(rows)


def median_combine(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The per-row median of the networks' forecasts (same series, dates and columns in each)."""
    first = frames[0]
    keys = first[["unique_id", "ds"]]
    for other in frames[1:]:
        if list(other.columns) != list(first.columns) or not other[["unique_id", "ds"]].equals(keys):
            raise RuntimeError("the ensemble's networks forecast different rows; they cannot be combined")
    values = [c for c in first.columns if c not in ("unique_id", "ds")]
    stacked = np.stack([f[values].to_numpy(dtype=float) for f in frames])
    out = keys.copy()
    out[values] = np.median(stacked, axis=0)  # NaN where any network has none (its bounds, point loss)
    return out
