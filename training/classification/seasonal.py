"""Clusters of yearly demand shapes: which products sell in which season, and which in none.

Why: ABC/XYZ and the demand pattern say how much and how regularly a product sells, not *when*.
Buyers plan stock around the crop seasons, so products with the same yearly shape (one main
season, the other season, two seasons, none) are bought and stocked together.

How, per SKU with at least a year of active life (first to last sale):

1. its weekly demand divided by its own level, a centred moving mean over a year (so growth and
   level shifts are not read as season), with the top 2 % of weeks capped (one-off big orders);
2. the mean of that by calendar week of the year (52 positions), smoothed circularly by keeping
   the first ``HARMONICS`` Fourier harmonics (week 52 is next to week 1), normalised to mean 0
   and unit length: the *profile*, a shape with no level, comparable across slow and fast movers;
3. a *season strength*: the F statistic of the harmonic regression of the detrended weeks on
   those harmonics (how much more the yearly shape explains than noise would: about 1 for no
   season); slow movers (``OCCURRENCE_ZERO_SHARE`` of weeks without a sale) also try their
   sale/no-sale weeks and keep the stronger. SKUs below ``STRENGTH_CUTOFF`` are ``flat``
   (non-seasonal) and are not clustered;
4. K-means on the profiles of the seasonal SKUs (on unit vectors, Euclidean distance is the
   correlation distance), k by silhouette; each cluster is named by its centroid's peaks
   ("peak Nov", "peaks May+Nov").

Labels: ``season_cluster`` -1 for too little history, 0 for flat, 1.. for the seasonal clusters
ordered by their first peak week; ``season_profile`` the name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

POSITIONS = 52  # calendar weeks of the year
HARMONICS = 2
MIN_WEEKS = 52
STRENGTH_CUTOFF = 2.5  # chosen on the demo catalogue (seeds 42, 7, 1): see bench/RESULTS.md
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SHORT, FLAT = -1, 0
WINSOR = 0.98  # weeks above this quantile of the detrended demand are capped at it
OCCURRENCE_ZERO_SHARE = 0.3  # from this share of no-sale weeks, the occurrence profile is tried too


def week_of_year(ds: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Calendar week position 0..51 of each date (the last day or two of December join week 51)."""
    doy = pd.DatetimeIndex(ds).dayofyear.to_numpy()
    return np.minimum((doy - 1) // 7, POSITIONS - 1)


def _basis(pos: np.ndarray, harmonics: int = HARMONICS) -> np.ndarray:
    angle = 2 * np.pi * np.asarray(pos, dtype=float)[:, None] * np.arange(1, harmonics + 1) / POSITIONS
    return np.hstack([np.cos(angle), np.sin(angle)])


def profile_and_strength(y: np.ndarray, pos: np.ndarray, harmonics: int = HARMONICS) -> tuple[np.ndarray, float]:
    """(unit-length profile over the 52 weeks, F statistic) of one SKU's active weekly demand.

    ``pos`` is the week-of-year position of each value. A flat profile (no variation) comes back
    as zeros with strength 0.
    """
    n = len(y)
    # The level: a centred moving mean over a year (a whole season cycle, so it keeps trends and
    # level shifts and not the season); half a year or more of it at the ends.
    level = pd.Series(y).rolling(POSITIONS, center=True, min_periods=POSITIONS // 2).mean().to_numpy()
    r = y / np.maximum(level, 0.05 * max(float(y.mean()), 1e-9))
    # One-off extreme weeks (tenders, outliers) would drown the season: cap them.
    r = np.minimum(r, np.quantile(r, WINSOR))
    # Mean by week of year (a week never seen is the overall mean), then circular low-pass.
    sums = np.bincount(pos, weights=r, minlength=POSITIONS)
    counts = np.bincount(pos, minlength=POSITIONS)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), r.mean())
    spectrum = np.fft.rfft(means - means.mean())
    spectrum[harmonics + 1 :] = 0
    smooth = np.fft.irfft(spectrum, POSITIONS)
    norm = float(np.linalg.norm(smooth))
    # Harmonic regression on the weeks themselves: explained vs residual variance.
    x = np.hstack([np.ones((n, 1)), _basis(pos, harmonics)])
    coef, *_ = np.linalg.lstsq(x, r, rcond=None)
    resid = r - x @ coef
    ss_res = float(resid @ resid)
    ss_tot = float(((r - r.mean()) ** 2).sum())
    p, dof = 2 * harmonics, n - 2 * harmonics - 1
    if norm == 0 or ss_res <= 0 or dof <= 0:
        return np.zeros(POSITIONS), 0.0
    f_stat = ((ss_tot - ss_res) / p) / (ss_res / dof)
    return smooth / norm, float(f_stat)


def yearly_profiles(demand: pd.DataFrame, min_weeks: int = MIN_WEEKS) -> tuple[pd.DataFrame, pd.Series]:
    """(profiles, strength): one row of 52 profile values per SKU with ``min_weeks`` of active life,
    and the season strength of those SKUs (index ``sku``)."""
    d = demand.sort_values(["unique_id", "ds"])
    rows, strengths = {}, {}
    for sku, g in d.groupby("unique_id", sort=True):
        y = g["y"].to_numpy(dtype=float)
        nz = np.flatnonzero(y > 0)
        if nz.size < 2 or nz[-1] - nz[0] + 1 < min_weeks:
            continue
        active = slice(int(nz[0]), int(nz[-1]) + 1)
        act, pos = y[active], week_of_year(g["ds"].iloc[active])
        prof, strength = profile_and_strength(act, pos)
        if (act == 0).mean() >= OCCURRENCE_ZERO_SHARE:
            # A slow mover's season is in how often it sells: the sale/no-sale weeks show it
            # through less noise than the sizes do.
            occ_prof, occ_strength = profile_and_strength((act > 0).astype(float), pos)
            if occ_strength > strength:
                prof, strength = occ_prof, occ_strength
        rows[sku], strengths[sku] = prof, strength
    profiles = pd.DataFrame.from_dict(rows, orient="index", columns=range(POSITIONS))
    profiles.index.name = "sku"
    return profiles, pd.Series(strengths, name="season_strength", dtype=float).rename_axis("sku")


def peak_weeks(profile: np.ndarray, min_share: float = 0.5) -> list[int]:
    """Week positions of the profile's circular local maxima at least ``min_share`` of its top."""
    prev, nxt = np.roll(profile, 1), np.roll(profile, -1)
    top = float(profile.max())
    return [int(w) for w in np.flatnonzero((profile >= prev) & (profile > nxt) & (profile >= min_share * top))]


def profile_name(profile: np.ndarray) -> str:
    """'peak Nov' or 'peaks May+Nov' (month of each peak's week, in calendar order)."""
    months = [MONTHS[min(int(w * 12 / POSITIONS), 11)] for w in peak_weeks(profile)]
    if not months:
        return "flat"
    return ("peak " if len(months) == 1 else "peaks ") + "+".join(dict.fromkeys(months))


@dataclass
class SeasonalClusters:
    """Per-SKU labels plus the centroids (unit profiles over 52 weeks) they were assigned to."""

    labels: pd.DataFrame  # index sku: season_strength, season_cluster, season_profile
    centroids: dict[int, list[float]] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)


def seasonal_clusters(
    demand: pd.DataFrame,
    k_range: range = range(2, 9),
    strength_cutoff: float = STRENGTH_CUTOFF,
    min_weeks: int = MIN_WEEKS,
    seed: int = 0,
) -> SeasonalClusters:
    """Season strength, cluster and name of every SKU of the long demand frame (see the module doc)."""
    skus = pd.Index(np.unique(demand["unique_id"].to_numpy()), name="sku")
    profiles, strength = yearly_profiles(demand, min_weeks)
    labels = pd.DataFrame(
        {"season_strength": strength.reindex(skus), "season_cluster": SHORT, "season_profile": "short history"},
        index=skus,
    )
    labels.loc[strength.index, ["season_cluster", "season_profile"]] = [FLAT, "flat"]
    seasonal = strength.index[strength >= strength_cutoff]
    centroids: dict[int, list[float]] = {}
    names: dict[int, str] = {FLAT: "flat"}
    if len(seasonal):
        x = profiles.loc[seasonal].to_numpy()
        raw = _kmeans_by_silhouette(x, k_range, seed)
        # Renumber 1.. by the first peak week of each centroid, so labels read in calendar order.
        cents = {c: x[raw == c].mean(axis=0) for c in np.unique(raw)}
        order = sorted(cents, key=lambda c: (peak_weeks(cents[c]) or [POSITIONS])[0])
        mapping = {c: i + 1 for i, c in enumerate(order)}
        for c, i in mapping.items():
            v = cents[c] / (np.linalg.norm(cents[c]) or 1.0)
            centroids[i] = [round(float(a), 6) for a in v]
            names[i] = profile_name(v)
        labels.loc[seasonal, "season_cluster"] = [mapping[c] for c in raw]
        labels.loc[seasonal, "season_profile"] = [names[mapping[c]] for c in raw]
    labels["season_cluster"] = labels["season_cluster"].astype(int)
    return SeasonalClusters(labels, centroids, names)


def _kmeans_by_silhouette(x: np.ndarray, k_range: range, seed: int) -> np.ndarray:
    n = len(x)
    best, best_score = np.zeros(n, dtype=int), -np.inf
    for k in k_range:
        if k >= n:
            break
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(x, labels)
        if score > best_score:
            best, best_score = labels, score
    return best
