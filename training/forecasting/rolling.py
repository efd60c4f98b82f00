"""Rolling-origin forecasts for the order agent: one honest forecast per SKU and week, made the week before.

The RL agent's observation (:func:`rl_agent.features.observe`) holds, at the start of each week ``t``, the
mean forecast demand per week over the next ``L + R`` weeks and the 80 % upper bound of week ``t``'s demand,
made with the demand up to week ``t - 1`` only. The agent trains on about two years of weeks and is
judged on the third, so it needs that forecast at *every* week, not only over the router's backtest
windows (its last 3 x 13 weeks). Re-running the whole router (its XGBoost selector over the full zoo,
global and deep members included) at ~150 origins per SKU costs hours; what this module runs instead is
the cheapest honest stand-in built from the zoo's own members:

- **members**: the zoo's fast local statistical members, by default ``SES`` (seasonally adjusted when the
  history allows M4's test), ``CrostonSBA`` and ``TSB``, as the zoo builds them
  (:func:`training.forecasting.methods.method_registry`), every member re-estimated at every origin on
  the weeks before it (the zoo's wrappers have no ``forward``, so a refit it is);
- **how** (:func:`member_paths`): what statsforecast's ``cross_validation(step_size=1, refit=True)``
  computes, without its per-(SKU, origin, member) Python calls (``refit=True`` with ``step_size=1`` is
  ~150 ``forecast`` calls per SKU and member; they were ~90 % of this module's time, SESOpt's scipy
  ``minimize_scalar`` alone half of it). Numba kernels run each member's own definition (statsforecast
  2.0.3, ``models.py``) over all origins of all SKUs in one call: CrostonSBA and TSB have fixed
  parameters, so their forecast at origin ``t`` is the state of their SES recursions after ``y[:t]``, one
  pass per SKU with the same floating-point operations (bit-for-bit statsforecast's value); SES is
  refitted at every origin as before: the seasonality gate and indices of
  :class:`~training.forecasting.statistical.SeasonallyAdjusted` on ``y[:t]``, then alpha by a port of
  scipy's bounded Brent search (``minimize_scalar(bounds=(0.01, 0.99))``, the same steps) on the same SSE:
  the same alpha and forecast as statsforecast where no seasonal adjustment applies, equal to rounding
  (sums in another order) where it does. Members without a kernel go through statsforecast's
  cross-validation (:func:`statsforecast_paths`, the previous implementation and the tests' reference);
- **selection**, the router's role: per SKU and origin, the member with the lowest mean squared
  one-step error over the previous ``selection_weeks`` weeks (errors of weeks before the origin only;
  the first member until one error is known). Squared error, because the agent reads a mean;
- **80 % bound**: the chosen member's one-step forecast plus the 80 % quantile of its own past one-step
  errors (the previous ``interval_weeks`` weeks, at least ``min_errors`` of them; NaN before that, where
  the catalogue falls back to the no-forecast width): a rolling split-conformal bound, because these
  members have no native intervals.

Origins run from the week after the first ``min_history`` weeks to the week after the last one (that
last row is the forecast for the next order, what the orders step recommends with). Forecasts are made on the recorded
sales: censored weeks are what a live forecaster would have seen (imputing them first would use a
centred window, i.e. later weeks).

Output: ``unique_id, ds, yhat, hi80, method``; the row at ``ds`` is the forecast made at the start of
week ``ds`` (data through the week before): ``yhat`` the mean per week over weeks ``ds .. ds + h - 1``
with ``h`` the SKU's ``L + R``, ``hi80`` the 80 % bound of week ``ds``. That is the per-origin contract
of :func:`rl_agent.catalogue.prepare_catalogue`'s ``forecasts``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numba import njit

from training.forecasting.contract import Setup
from training.forecasting.methods import method_registry
from training.forecasting.statistical import batched_statsforecast

FAST_MEMBERS = ("SES", "CrostonSBA", "TSB")
COLUMNS = ["unique_id", "ds", "yhat", "hi80", "method"]


def rolling_forecasts(
    demand: pd.DataFrame,
    horizons: Mapping[str, int] | int,
    members: Sequence[str] = FAST_MEMBERS,
    min_history: int = 8,
    selection_weeks: int = 26,
    interval_weeks: int = 52,
    min_errors: int = 8,
    season_length: int = 52,
    freq: str = "W-MON",
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Per-origin forecasts of ``demand`` (``unique_id, ds, y``, weekly, ``y`` finite: NaN raises) for every
    SKU with at least ``min_history`` weeks; ``horizons`` is each SKU's ``L + R`` in weeks (one int for all;
    missing: 1). ``n_jobs``: the statsforecast workers for members other than :data:`FAST_MEMBERS`."""
    if min_history < 2 or min_errors < 1:
        raise ValueError("min_history must be >= 2 and min_errors >= 1")
    panel = OriginPanel.build(demand, horizons, min_history, freq)
    if panel is None:
        return pd.DataFrame(columns=COLUMNS)
    one_step, mean = member_paths(panel, list(members), season_length, freq, n_jobs)
    choice, q80 = _select_kernel(
        one_step, panel.y_next, panel.row_offsets, int(selection_weeks), int(interval_weeks), int(min_errors)
    )
    rows = np.arange(panel.n_rows)
    bound = one_step[rows, choice] + q80
    return pd.DataFrame(
        {
            "unique_id": panel.row_ids,
            "ds": panel.row_ds,
            "yhat": np.clip(mean, 0.0, None)[rows, choice],
            "hi80": np.maximum(bound, 0.0),
            "method": np.asarray(members)[choice],
        }
    )


class OriginPanel:
    """The SKUs with ``min_history`` weeks or more as flat arrays, and one row per (SKU, origin).

    ``y[offsets[s]:offsets[s + 1]]`` is SKU ``s``'s history (sorted by ``unique_id, ds``); its origins
    are ``t = min_history .. L`` (the forecast made with ``y[:t]``, for the week at position ``t``), rows
    ``row_offsets[s]:row_offsets[s + 1]``; ``y_next`` is that week's actual (NaN after the data)."""

    def __init__(self, frame: pd.DataFrame, offsets: np.ndarray, h: np.ndarray, min_history: int, freq: str):
        self.frame, self.offsets, self.h, self.min_history = frame, offsets, h, min_history
        self.y = frame["y"].to_numpy(np.float64)
        lengths = np.diff(offsets)
        origins = lengths - min_history + 1
        self.row_offsets = np.r_[0, np.cumsum(origins)].astype(np.int64)
        self.n_rows = int(self.row_offsets[-1])
        self.row_sku = np.repeat(np.arange(len(lengths)), origins)
        self.row_t = np.arange(self.n_rows) - self.row_offsets[self.row_sku] + min_history
        position = offsets[self.row_sku] + self.row_t  # the forecast week's row in frame, or the next SKU's
        after = self.row_t == lengths[self.row_sku]
        self.y_next = np.where(after, np.nan, self.y[np.minimum(position, len(self.y) - 1)])
        ds = frame["ds"].to_numpy()
        row_ds = ds[np.minimum(position, len(ds) - 1)]
        row_ds[after] = (pd.DatetimeIndex(ds[offsets[1:] - 1]) + pd.tseries.frequencies.to_offset(freq)).to_numpy()
        self.row_ds = row_ds
        self.row_ids = frame["unique_id"].iloc[offsets[self.row_sku]].reset_index(drop=True)

    @classmethod
    def build(
        cls, demand: pd.DataFrame, horizons: Mapping[str, int] | int, min_history: int, freq: str
    ) -> OriginPanel | None:
        frame = demand[["unique_id", "ds", "y"]].assign(ds=lambda d: pd.to_datetime(d["ds"]))
        frame = frame.sort_values(["unique_id", "ds"], ignore_index=True)
        lengths = frame.groupby("unique_id", sort=False, observed=True)["y"].transform("size")
        frame = frame[lengths >= min_history].reset_index(drop=True)
        if frame.empty:
            return None
        if not np.isfinite(frame["y"].to_numpy(np.float64)).all():
            raise ValueError("rolling_forecasts needs finite demand (zero-filled weeks, no NaN)")
        sizes = frame.groupby("unique_id", sort=False, observed=True).size()
        offsets = np.r_[0, np.cumsum(sizes.to_numpy())].astype(np.int64)
        h = _horizons(sizes.index.to_numpy(), horizons).to_numpy(np.int64)
        return cls(frame, offsets, h, min_history, freq)


def _horizons(skus: np.ndarray, horizons: Mapping[str, int] | int) -> pd.Series:
    values = [horizons] * len(skus) if isinstance(horizons, int) else [int(horizons.get(str(s), 1)) for s in skus]
    return pd.Series(np.maximum(values, 1), index=skus, dtype=int)


def member_paths(
    panel: OriginPanel, members: list[str], season_length: int, freq: str, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row (SKU, origin) and member: the one-step forecast and the mean over the SKU's ``L + R`` weeks
    (before clipping), each member fitted on the weeks before the origin only."""
    one_step = np.full((panel.n_rows, len(members)), np.nan, order="F")  # columns contiguous for the kernels
    mean = np.full_like(one_step, np.nan)
    args = (panel.y, panel.offsets, panel.row_offsets, panel.min_history)
    other = []
    for j, name in enumerate(members):
        if name == "SES":
            _ses_paths(*args, panel.h, int(season_length), one_step[:, j], mean[:, j])
        elif name == "CrostonSBA":
            _croston_sba_paths(*args, one_step[:, j])
            mean[:, j] = one_step[:, j]  # flat forecasts: the horizon mean is the one-step value
        elif name == "TSB":
            defaults = method_registry()["TSB"].defaults
            _tsb_paths(*args, float(defaults["alpha_d"]), float(defaults["alpha_p"]), one_step[:, j])
            mean[:, j] = one_step[:, j]
        else:
            other.append(j)
    if other:
        names = [members[j] for j in other]
        one_step[:, other], mean[:, other] = statsforecast_paths(panel, names, season_length, freq, n_jobs)
    return one_step, mean


def statsforecast_paths(
    panel: OriginPanel, members: list[str], season_length: int, freq: str, n_jobs: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`member_paths` for any zoo member, by statsforecast ``cross_validation(step_size=1,
    refit=True)``: every origin a refit (the reference the kernels are tested against; slow)."""
    frame, offsets, min_history = panel.frame, panel.offsets, panel.min_history
    longest = max(int(panel.h.max()), 1)
    registry = method_registry()
    setup = Setup(season_length=season_length, horizon=longest, freq=freq)
    sf_members = [registry[name].member(setup) for name in members]
    step = pd.Timedelta(weeks=1)
    lengths = np.diff(offsets)
    h_of = pd.Series(panel.h, index=frame["unique_id"].iloc[offsets[:-1]].to_numpy())
    frame = frame.assign(length=np.repeat(lengths, lengths))
    parts = []
    for length, group in frame.drop(columns="length").groupby(frame["length"]):
        # Pad ``longest`` zero weeks after the end, so origins up to the last week have a full
        # horizon to be "tested" on; a forecast never sees weeks after its origin, so the padding
        # changes no forecast, only gives the cross-validation its windows (their y is dropped).
        pad = group.groupby("unique_id", sort=False)["ds"].max()
        future = pd.DataFrame(
            {
                "unique_id": np.repeat(pad.index.to_numpy(), longest),
                "ds": (pad.to_numpy()[:, None] + step * np.arange(1, longest + 1)[None, :]).ravel(),
                "y": 0.0,
            }
        )
        padded = pd.concat([group, future], ignore_index=True).sort_values(["unique_id", "ds"], ignore_index=True)
        cv = batched_statsforecast(sf_members, freq, n_jobs).cross_validation(
            df=padded, h=longest, n_windows=int(length) - min_history + 1, step_size=1, refit=True
        )
        parts.append(cv.reset_index(drop=True) if "unique_id" in cv.columns else cv.reset_index())
    cv = pd.concat(parts, ignore_index=True)
    cv["unique_id"] = cv["unique_id"].astype(frame["unique_id"].dtype)
    cv["step"] = ((cv["ds"] - cv["cutoff"]) / step).round().astype(int)
    keys = ["unique_id", "cutoff"]
    window = cv[cv["step"] <= cv["unique_id"].map(h_of).to_numpy()]
    mean = window.groupby(keys)[members].mean()
    first = cv[cv["step"] == 1].set_index(keys)[members]
    ds = frame["ds"].to_numpy()
    rows = pd.MultiIndex.from_arrays([panel.row_ids.to_numpy(), ds[offsets[panel.row_sku] + panel.row_t - 1]])
    return first.reindex(rows).to_numpy(float), mean.reindex(rows).to_numpy(float)


# --- kernels: statsforecast's definitions (models.py, 2.0.3), one pass per SKU over all its origins ---


@njit(cache=True)
def _ses_sse(alpha: float, x: np.ndarray) -> float:
    # statsforecast.models._ses_sse, operation for operation (so the optimum is the same to the bit)
    complement = 1 - alpha
    forecast = x[0]
    sse = 0.0
    for i in range(1, len(x)):
        forecast = alpha * x[i - 1] + complement * forecast
        sse += (x[i] - forecast) ** 2
    return sse


@njit(cache=True)
def _ses_forecast(x: np.ndarray, alpha: float) -> float:
    # statsforecast.models._ses_forecast's one-step forecast
    complement = 1 - alpha
    fitted = x[0]
    for i in range(1, len(x)):
        fitted = alpha * x[i - 1] + complement * fitted
    return alpha * x[len(x) - 1] + complement * fitted


@njit(cache=True)
def _optimal_alpha(x: np.ndarray, lower: float, upper: float) -> float:
    """scipy's ``minimize_scalar(_ses_sse, bounds=(lower, upper))`` (``_minimize_scalar_bounded``,
    xatol 1e-5, 500 evaluations at most), step for step: the alpha statsforecast's SESOpt fits."""
    xatol = 1e-5
    maxfun = 500
    sqrt_eps = np.sqrt(2.2e-16)
    golden_mean = 0.5 * (3.0 - np.sqrt(5.0))
    a, b = lower, upper
    fulc = a + golden_mean * (b - a)
    nfc, xf = fulc, fulc
    rat = e = 0.0
    xx = xf
    fx = _ses_sse(xx, x)
    num = 1
    ffulc = fnfc = fx
    xm = 0.5 * (a + b)
    tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
    tol2 = 2.0 * tol1
    while np.abs(xf - xm) > (tol2 - 0.5 * (b - a)):
        golden = True
        if np.abs(e) > tol1:
            golden = False
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = np.abs(q)
            r = e
            e = rat
            if (np.abs(p) < np.abs(0.5 * q * r)) and (p > q * (a - xf)) and (p < q * (b - xf)):
                rat = (p + 0.0) / q
                xx = xf + rat
                if ((xx - a) < tol2) or ((b - xx) < tol2):
                    si = np.sign(xm - xf) + ((xm - xf) == 0)
                    rat = tol1 * si
            else:
                golden = True
        if golden:
            e = a - xf if xf >= xm else b - xf
            rat = golden_mean * e
        si = np.sign(rat) + (rat == 0)
        xx = xf + si * max(np.abs(rat), tol1)
        fu = _ses_sse(xx, x)
        num += 1
        if fu <= fx:
            if xx >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc = nfc, fnfc
            nfc, fnfc = xf, fx
            xf, fx = xx, fu
        else:
            if xx < xf:
                a = xx
            else:
                b = xx
            if (fu <= fnfc) or (nfc == xf):
                fulc, ffulc = nfc, fnfc
                nfc, fnfc = xx, fu
            elif (fu <= ffulc) or (fulc == xf) or (fulc == nfc):  # noqa: SIM109 (scipy's text)
                fulc, ffulc = xx, fu
        xm = 0.5 * (a + b)
        tol1 = sqrt_eps * np.abs(xf) + xatol / 3.0
        tol2 = 2.0 * tol1
        if num >= maxfun:
            break
    return xf


@njit(cache=True)
def _seasonal(y: np.ndarray, m: int) -> bool:
    """:class:`~training.forecasting.statistical.SeasonallyAdjusted`'s gate: non-negative with some demand
    and :func:`~training.forecasting.statistical.seasonality_test` (M4's 90 % ACF test at lag m)."""
    n = len(y)
    if m <= 1 or n < 3 * m or y.min() < 0 or not y.mean() > 0:
        return False
    x = y - y.mean()
    denom = np.sum(x**2)
    if denom == 0:
        return False
    acf = np.empty(m)
    for k in range(1, m + 1):
        acf[k - 1] = np.sum(x[k:] * x[: n - k]) / denom
    limit = 1.645 * np.sqrt((1 + 2 * np.sum(acf[: m - 1] ** 2)) / n)
    return abs(acf[m - 1]) > limit


@njit(cache=True)
def _seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    # training.forecasting.statistical.seasonal_indices (classical multiplicative decomposition)
    n = len(y)
    width = m + 1 if m % 2 == 0 else m
    kernel = np.full(width, 1.0 / m)
    if m % 2 == 0:
        kernel[0] = kernel[-1] = 0.5 / m
    offset = (width - 1) // 2
    total = np.zeros(m)
    count = np.zeros(m)
    finite = np.zeros(m, dtype=np.bool_)
    for j in range(n - width + 1):
        trend = 0.0
        for k in range(width):
            trend += y[j + k] * kernel[k]
        ratio = y[offset + j] / trend if trend != 0 else (np.nan if y[offset + j] == 0 else np.inf)
        i = (offset + j) % m
        if not np.isnan(ratio):
            total[i] += ratio
            count[i] += 1
            finite[i] |= np.isfinite(ratio)
    idx = np.ones(m)
    for i in range(m):
        if finite[i]:
            value = total[i] / count[i]
            if np.isfinite(value) and value > 0:
                idx[i] = value
    return idx * m / idx.sum()


@njit(cache=True)
def _ses_paths(y, offsets, row_offsets, min_history, h, m, one_step, mean):
    """The zoo's SES (``SeasonallyAdjusted(SESOpt)``) refitted at every origin: the seasonal test and
    indices, then alpha (by the same bounded Brent search), on the weeks before the origin only."""
    for s in range(len(offsets) - 1):
        series = y[offsets[s] : offsets[s + 1]]
        row = row_offsets[s]
        for t in range(min_history, len(series) + 1):
            x = series[:t]
            if _seasonal(x, m):
                idx = _seasonal_indices(x, m)
                adjusted = x / idx[np.arange(t) % m]
                level = _ses_forecast(adjusted, _optimal_alpha(adjusted, 0.01, 0.99))
                one_step[row] = level * idx[t % m]
                total = 0.0
                for k in range(h[s]):
                    total += level * idx[(t + k) % m]
                mean[row] = total / h[s]
            else:
                level = _ses_forecast(x, _optimal_alpha(x, 0.01, 0.99))
                one_step[row] = level
                mean[row] = level
            row += 1


@njit(cache=True)
def _croston_sba_paths(y, offsets, row_offsets, min_history, out):
    """statsforecast's ``_croston_sba`` at every origin: SES (alpha 0.1) of the positive demands and of the
    intervals between non-zero weeks, their ratio x 0.95; no demand yet: the naive forecast x 0.95. The
    SES states after ``y[:t]`` are exactly those statsforecast computes on ``y[:t]`` (same operations)."""
    alpha = 0.1
    complement = 1 - alpha
    for s in range(len(offsets) - 1):
        series = y[offsets[s] : offsets[s + 1]]
        row = row_offsets[s]
        demand = fitted_d = 0.0  # last demand seen and the SES level before it
        interval = fitted_i = 0.0
        n_demand = n_interval = 0
        last_nonzero = -1
        for t in range(1, len(series) + 1):
            v = series[t - 1]
            if v > 0:
                fitted_d = v if n_demand == 0 else alpha * demand + complement * fitted_d
                demand = v
                n_demand += 1
            if v != 0:
                gap = float(t - 1 - last_nonzero)
                last_nonzero = t - 1
                fitted_i = gap if n_interval == 0 else alpha * interval + complement * fitted_i
                interval = gap
                n_interval += 1
            if t < min_history:
                continue
            if n_demand == 0:
                value = series[t - 1]  # statsforecast's naive fallback when there is no demand
            else:
                ydp = alpha * demand + complement * fitted_d
                yip = alpha * interval + complement * fitted_i
                value = ydp / yip if yip != 0.0 else ydp
            out[row] = value * 0.95
            row += 1


@njit(cache=True)
def _tsb_paths(y, offsets, row_offsets, min_history, alpha_d, alpha_p, out):
    """statsforecast's ``_tsb`` at every origin: SES (``alpha_p``) of the demand indicator times SES
    (``alpha_d``) of the positive demands; all zero so far: 0."""
    comp_d = 1 - alpha_d
    comp_p = 1 - alpha_p
    for s in range(len(offsets) - 1):
        series = y[offsets[s] : offsets[s + 1]]
        row = row_offsets[s]
        demand = fitted_d = 0.0
        prob = fitted_p = 0.0
        n_demand = 0
        any_nonzero = False
        for t in range(1, len(series) + 1):
            v = series[t - 1]
            p = 1.0 if v != 0 else 0.0
            fitted_p = p if t == 1 else alpha_p * prob + comp_p * fitted_p
            prob = p
            any_nonzero |= v != 0
            if v > 0:
                fitted_d = v if n_demand == 0 else alpha_d * demand + comp_d * fitted_d
                demand = v
                n_demand += 1
            if t < min_history:
                continue
            if not any_nonzero or n_demand == 0:  # (negative weeks only: statsforecast has no definition)
                out[row] = 0.0
            else:
                ypf = alpha_p * prob + comp_p * fitted_p
                ydf = alpha_d * demand + comp_d * fitted_d
                out[row] = ypf * ydf
            row += 1


@njit(cache=True)
def _select_kernel(one_step, y_next, row_offsets, selection_weeks, interval_weeks, min_errors):
    """Per row: the member with the lowest mean squared one-step error over the previous
    ``selection_weeks`` origins (the first member before any error is known), and the 80 % quantile
    (linear, as pandas' rolling quantile) of its errors over the previous ``interval_weeks`` origins
    (NaN with fewer than ``min_errors``). The error of the origin at ``t`` is that of week ``t``,
    observed before the origin ``t + 1``: a row uses the errors of the rows before it only."""
    n_rows, n_members = one_step.shape
    choice = np.zeros(n_rows, dtype=np.int64)
    q80 = np.full(n_rows, np.nan)
    buffer = np.empty(max(interval_weeks, 1))
    for s in range(len(row_offsets) - 1):
        first, stop = row_offsets[s], row_offsets[s + 1]
        for r in range(first, stop):
            best = np.inf
            lo = max(first, r - selection_weeks)
            for j in range(n_members):
                total = 0.0
                count = 0
                for k in range(lo, r):
                    e = y_next[k] - one_step[k, j]
                    if not np.isnan(e):
                        total += e * e
                        count += 1
                if count and total / count < best:
                    best = total / count
                    choice[r] = j
            c = choice[r]
            count = 0
            for k in range(max(first, r - interval_weeks), r):
                e = y_next[k] - one_step[k, c]
                if not np.isnan(e):
                    buffer[count] = e
                    count += 1
            if count >= min_errors:
                values = np.sort(buffer[:count])
                position = 0.8 * (count - 1)
                low = int(position)
                if low == position:
                    q80[r] = values[low]
                else:
                    q80[r] = values[low] + (values[low + 1] - values[low]) * (position - low)
    return choice, q80


def horizons_from_products(products: pd.DataFrame, review_period: int = 1) -> dict[str, int]:
    """Each SKU's ``L + R`` in weeks from the products table (``sku, lead_time_weeks``)."""
    table = products.drop_duplicates("sku")
    leads = zip(table["sku"], table["lead_time_weeks"], strict=True)
    return {str(sku): int(lead) + int(review_period) for sku, lead in leads}
