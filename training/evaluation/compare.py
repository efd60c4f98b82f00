"""Does the router beat single methods and the classical rule? Metrics, significance tests, a report.

The router (``reference``) is compared with every other method of a backtest on the same SKUs
and windows:

- accuracy tables overall, per demand pattern and per product category (M4 metrics from
  :func:`training.forecasting.metrics.summarise`, so OWA is relative to Naive2 within each group);
- a Wilcoxon signed-rank test on per-SKU errors and a Diebold–Mariano test on the
  cross-sectional mean loss over time (see :func:`significance` for why both);
- the win rate, the share of SKUs on which the router is at least as accurate;
- one self-contained HTML report with Plotly charts (plotly.js embedded once, works offline).

The classical rule is what an inventory planner would do without a router: Croston for
intermittent and lumpy demand, exponential smoothing (ETS) for the rest (Syntetos-Boylan
categorisation).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from training.forecasting.metrics import summarise

CLASSICAL_RULE = "Croston/ETS rule"
INTERMITTENT_PATTERNS = ("intermittent", "lumpy")
CROSTON_FALLBACKS = ("CrostonSBA", "CrostonClassic", "CrostonOptimized")
ETS_FALLBACKS = ("AutoETS", "Holt", "SES")
ALPHA = 0.05
METRIC_COLUMNS = ("mae", "rmse", "smape", "mase", "owa")

_KEYS = ("unique_id", "cutoff", "method")


def _pick_method(available: list[str], preferred: str, fallbacks: tuple[str, ...], prefix: str = "") -> str | None:
    for name in (preferred, *fallbacks):
        if name in available:
            return name
    if prefix:
        for name in sorted(available):
            if name.startswith(prefix):
                return name
    return None


def classical_rule_forecasts(
    forecasts: pd.DataFrame,
    patterns: pd.Series,
    intermittent_method: str = "CrostonClassic",
    smooth_method: str = "AutoETS",
) -> pd.DataFrame:
    """The classical rule's forecasts: Croston rows for intermittent/lumpy SKUs, ETS rows otherwise.

    ``forecasts`` is a long frame (unique_id, ds, [cutoff,] y, method, yhat, ...) and ``patterns``
    the demand pattern per unique_id (the ``pattern`` column of the classes frame). SKUs without
    a pattern count as non-intermittent. When the requested method is not in ``forecasts`` the
    rule falls back to CrostonSBA, CrostonClassic, CrostonOptimized or any ``Croston*`` method,
    and to AutoETS, Holt or SES. The rows are returned relabelled as ``CLASSICAL_RULE``; the
    methods actually used are in ``result.attrs["sources"]``.
    """
    available = sorted(forecasts["method"].dropna().unique().astype(str))
    pattern = forecasts["unique_id"].map(patterns)
    intermittent = pattern.isin(INTERMITTENT_PATTERNS)
    croston = _pick_method(available, intermittent_method, CROSTON_FALLBACKS, prefix="Croston")
    ets = _pick_method(available, smooth_method, ETS_FALLBACKS)
    if croston is None and intermittent.any():
        raise ValueError(
            f"classical rule: no Croston method ({intermittent_method}, {', '.join(CROSTON_FALLBACKS)}) "
            f"among the forecast methods {available}, but some SKUs are intermittent or lumpy"
        )
    if ets is None and (~intermittent).any():
        raise ValueError(
            f"classical rule: no exponential-smoothing method ({smooth_method}, {', '.join(ETS_FALLBACKS)}) "
            f"among the forecast methods {available}, but some SKUs are smooth or erratic"
        )
    take = (intermittent & (forecasts["method"] == croston)) | (~intermittent & (forecasts["method"] == ets))
    out = forecasts[take].copy()
    out["method"] = CLASSICAL_RULE
    out = out.reset_index(drop=True)
    out.attrs["sources"] = {"intermittent": croston, "other": ets}
    return out


def pointwise_scaled_errors(forecasts: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """|y − ŷ| / scale per forecast point, with the step (1..h) within each (SKU, cutoff, method).

    The scale is the MASE scale of each SKU-window, taken from ``errors`` (built by
    ``pointwise_errors``), so the mean of ``loss`` over a window is that window's MASE. Points
    whose scale is undefined or zero (constant training sample) are dropped.
    """
    f = forecasts.copy()
    if "cutoff" not in f:
        f["cutoff"] = pd.NaT
    keys = [k for k in _KEYS if k in errors.columns]
    f = f.sort_values([*_KEYS, "ds"], kind="stable")
    f["step"] = f.groupby(list(_KEYS), sort=False, dropna=False).cumcount() + 1
    scale = errors[[*keys, "scale"]].drop_duplicates(keys)
    f = f.drop(columns="scale", errors="ignore").merge(scale, on=keys, how="left")
    f = f[f["scale"] > 0]
    f["loss"] = (f["y"] - f["yhat"]).abs() / f["scale"]
    return f[[*_KEYS, "ds", "step", "loss"]].reset_index(drop=True)


def diebold_mariano(d: np.ndarray, h: int = 1) -> tuple[float, float]:
    """Diebold–Mariano test of a mean-zero loss differential, with the HLN small-sample correction.

    ``d`` is the loss differential series (method − reference) in time order and ``h`` the
    forecast horizon: the long-run variance uses the autocovariances up to lag h − 1
    (rectangular window, as in Diebold & Mariano 1995); should that be non-positive, the
    Bartlett (Newey–West) weights are used instead, which keep it positive. Harvey, Leybourne
    & Newbold (1997) scale the statistic by √((T + 1 − 2h + h(h − 1)/T) / T) and compare it
    with Student's t on T − 1 degrees of freedom. Returns (statistic, two-sided p-value);
    a positive statistic means the reference has the lower loss.
    """
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    t_len = len(d)
    if t_len < 2:
        return float("nan"), float("nan")
    h = int(min(max(h, 1), t_len - 1))
    mean = float(d.mean())
    centred = d - mean
    if np.allclose(centred, 0.0, rtol=0.0, atol=1e-15):
        if mean == 0.0:
            return 0.0, 1.0
        return float(np.sign(mean) * np.inf), 0.0
    gamma = np.array([centred[k:] @ centred[: t_len - k] / t_len for k in range(h)])
    lrv = gamma[0] + 2.0 * gamma[1:].sum()
    if lrv <= 0:
        weights = 1.0 - np.arange(1, h) / h
        lrv = gamma[0] + 2.0 * (weights * gamma[1:]).sum()
    dm = mean / np.sqrt(lrv / t_len)
    hln = np.sqrt((t_len + 1 - 2 * h + h * (h - 1) / t_len) / t_len)
    stat = float(dm * hln)
    p = float(2.0 * stats.t.sf(abs(stat), df=t_len - 1))
    return stat, p


def _wilcoxon_p(diff: np.ndarray) -> float:
    diff = diff[np.isfinite(diff)]
    if len(diff) == 0:
        return float("nan")
    if np.all(diff == 0):
        return 1.0
    return float(stats.wilcoxon(diff, zero_method="zsplit", alternative="two-sided").pvalue)


def _verdict(diff: float, wilcoxon_p: float, dm_stat: float, dm_p: float, alpha: float = ALPHA) -> str:
    """'reference' or 'method' when Wilcoxon (and DM, where computed) both reject in the same direction."""
    if not np.isfinite(wilcoxon_p) or wilcoxon_p >= alpha or diff == 0 or not np.isfinite(diff):
        return "no significant difference"
    winner = "reference" if diff > 0 else "method"
    if np.isfinite(dm_p) and (dm_p >= alpha or np.sign(dm_stat) != np.sign(diff)):
        return "no significant difference"
    return winner


def significance(
    errors: pd.DataFrame,
    reference: str,
    metric: str = "mase",
    pointwise: pd.DataFrame | None = None,
    dm_h: int | None = None,
) -> pd.DataFrame:
    """Is ``reference`` significantly better or worse than each other method? Two tests.

    - **Wilcoxon signed-rank** (two-sided, ``zero_method="zsplit"``) on the paired per-SKU
      errors, each SKU's ``metric`` averaged over the backtest windows. It answers "across
      products, does one method tend to be better?", is robust to the heavy tails of MASE
      (a few SKUs with huge scaled errors do not dominate) and needs no distributional
      assumption — but it treats SKUs as independent and ignores time.
    - **Diebold–Mariano** (with the Harvey-Leybourne-Newbold correction, see
      :func:`diebold_mariano`) on the loss differential averaged across SKUs at each time
      index (cutoff, step), the loss being the absolute error scaled by each SKU-window's MASE
      scale. It answers "over time, is the mean loss lower?", the question M4-style
      accuracy asks, and accounts for the serial correlation of multi-step errors (lags up to
      ``dm_h`` − 1, by default the forecast horizon) and for common shocks that hit every
      product in the same week (averaging across SKUs first keeps that dependence inside one
      observation instead of pretending the SKUs are independent).

    The tests can disagree (a method better on most SKUs but much worse on a few, or the
    reverse), so ``better`` names a winner only when Wilcoxon rejects at 5 % and, where the DM
    test could be computed (``pointwise`` given), DM rejects in the same direction too. The
    p-values are per comparison, not adjusted for multiple testing.

    ``pointwise`` is the frame from :func:`pointwise_scaled_errors`; without it the DM columns
    are NaN. Returns one row per other method: method, reference, mean_reference, mean_method,
    diff (method − reference: positive means the reference is more accurate), n_skus,
    wilcoxon_p, dm_stat, dm_p, dm_T, better.
    """
    if reference not in set(errors["method"]):
        raise ValueError(f"reference method {reference!r} has no errors; methods: {sorted(errors['method'].unique())}")
    per_sku = errors.groupby(["unique_id", "method"])[metric].mean().unstack("method")
    if pointwise is not None:
        pw = pointwise.copy()
        if "cutoff" not in pw:
            pw["cutoff"] = pd.NaT
        horizon = int(pw["step"].max()) if len(pw) else 1
        ref_pw = pw[pw["method"] == reference].set_index(["unique_id", "cutoff", "step"])["loss"]
    rows = []
    for method in [m for m in per_sku.columns if m != reference]:
        pair = per_sku[[reference, method]].dropna()
        diff = (pair[method] - pair[reference]).to_numpy()
        dm_stat = dm_p = float("nan")
        t_len = 0
        if pointwise is not None:
            other = pw[pw["method"] == method].set_index(["unique_id", "cutoff", "step"])["loss"]
            both = pd.concat({"ref": ref_pw, "other": other}, axis=1, join="inner").dropna()
            if len(both):
                d = (both["other"] - both["ref"]).groupby(level=["cutoff", "step"], dropna=False).mean().sort_index()
                t_len = len(d)
                dm_stat, dm_p = diebold_mariano(d.to_numpy(), dm_h or horizon)
        mean_ref = float(pair[reference].mean()) if len(pair) else float("nan")
        mean_method = float(pair[method].mean()) if len(pair) else float("nan")
        w_p = _wilcoxon_p(diff)
        rows.append(
            {
                "method": method,
                "reference": reference,
                "mean_reference": mean_ref,
                "mean_method": mean_method,
                "diff": mean_method - mean_ref,
                "n_skus": len(pair),
                "wilcoxon_p": w_p,
                "dm_stat": dm_stat,
                "dm_p": dm_p,
                "dm_T": t_len,
                "better": _verdict(mean_method - mean_ref, w_p, dm_stat, dm_p),
            }
        )
    columns = [
        "method",
        "reference",
        "mean_reference",
        "mean_method",
        "diff",
        "n_skus",
        "wilcoxon_p",
        "dm_stat",
        "dm_p",
        "dm_T",
        "better",
    ]
    return pd.DataFrame(rows, columns=columns)


def win_rate(errors: pd.DataFrame, reference: str, metric: str = "mase") -> pd.DataFrame:
    """Per other method, the share of SKUs on which ``reference``'s mean error is ≤ the method's."""
    per_sku = errors.groupby(["unique_id", "method"])[metric].mean().unstack("method")
    rows = []
    for method in [m for m in per_sku.columns if m != reference]:
        pair = per_sku[[reference, method]].dropna()
        ref, other = pair[reference], pair[method]
        n = len(pair)
        rows.append(
            {
                "method": method,
                "win_rate": float((ref <= other).mean()) if n else float("nan"),
                "strict_win_rate": float((ref < other).mean()) if n else float("nan"),
                "tie_rate": float((ref == other).mean()) if n else float("nan"),
                "n_skus": n,
            }
        )
    return pd.DataFrame(rows, columns=["method", "win_rate", "strict_win_rate", "tie_rate", "n_skus"])


def _metric_table(errors: pd.DataFrame, baseline: str) -> pd.DataFrame:
    table = summarise(errors, baseline=baseline)
    table["n_skus"] = errors.groupby("method")["unique_id"].nunique()
    table = table.rename(columns={"n": "n_windows"})
    table.index.name = "method"
    first = [c for c in METRIC_COLUMNS if c in table]
    table = table[[*first, *[c for c in table if c not in first]]]
    return table.sort_values(["mase", "mae"]).reset_index()


def _grouped_table(errors: pd.DataFrame, groups: pd.Series, name: str, baseline: str) -> pd.DataFrame:
    e = errors.assign(**{name: errors["unique_id"].map(groups).fillna("unknown").astype(str)})
    parts = {key: _metric_table(part, baseline) for key, part in e.groupby(name, sort=True)}
    if not parts:
        return pd.DataFrame(columns=[name, "method", *METRIC_COLUMNS, "n_skus"])
    return pd.concat(parts, names=[name, "_row"]).reset_index(level=name).reset_index(drop=True)


@dataclass
class Evaluation:
    """Router vs. the rest: accuracy tables, significance tests and win rates."""

    reference: str
    overall: pd.DataFrame  # one row per method: mae, rmse, smape, mase, owa, ..., n_skus
    by_pattern: pd.DataFrame  # the same per demand pattern
    by_category: pd.DataFrame  # the same per product category (empty without products)
    significance: pd.DataFrame  # one row per other method, see significance()
    win_rate: pd.DataFrame  # one row per other method, see win_rate()
    metric: str = "mase"
    notes: list[str] = field(default_factory=list)

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """The non-empty tables by name (for logging as CSV artifacts)."""
        frames = {
            "overall": self.overall,
            "by_pattern": self.by_pattern,
            "by_category": self.by_category,
            "significance": self.significance,
            "win_rate": self.win_rate,
        }
        return {name: frame for name, frame in frames.items() if frame is not None and not frame.empty}

    def summary_line(self) -> str:
        """One sentence: the reference's MASE and its significant wins and losses."""
        row = self.overall.set_index("method").loc[self.reference] if len(self.overall) else None
        sig = self.significance
        wins = sig.loc[sig["better"] == "reference", "method"].tolist()
        losses = sig.loc[sig["better"] == "method", "method"].tolist()
        mase = f"{row['mase']:.3f}" if row is not None else "n/a"
        return (
            f"{self.reference}: MASE {mase}; significantly better than {', '.join(wins) or 'none'}; "
            f"significantly worse than {', '.join(losses) or 'none'}"
        )

    def figures(self) -> list[tuple[str, object]]:
        """(heading, plotly Figure) pairs of the report."""
        import plotly.graph_objects as go

        figs: list[tuple[str, object]] = []
        ov = self.overall.sort_values("mase")
        colors = ["#d62728" if m == self.reference else "#7f9fbf" for m in ov["method"]]
        fig = go.Figure(
            go.Bar(
                x=ov["method"],
                y=ov["mase"],
                marker_color=colors,
                text=[f"{v:.3f}" for v in ov["mase"]],
                textposition="outside",
            )
        )
        fig.update_layout(
            title=f"MASE per method, all SKUs ({self.reference} highlighted)",
            yaxis_title="MASE (lower is better)",
            template="plotly_white",
            height=450,
        )
        figs.append(("MASE per method", fig))
        for name, table in (("pattern", self.by_pattern), ("category", self.by_category)):
            if table is None or table.empty:
                continue
            fig = go.Figure()
            for method in ov["method"]:
                part = table[table["method"] == method]
                bar = {"marker_color": "#d62728"} if method == self.reference else {}
                fig.add_bar(x=part[name], y=part["mase"], name=str(method), **bar)
            fig.update_layout(
                barmode="group",
                title=f"MASE by demand {name}" if name == "pattern" else f"MASE by product {name}",
                yaxis_title="MASE (lower is better)",
                template="plotly_white",
                height=480,
            )
            figs.append((f"MASE by {name}", fig))
        sig = self.significance
        if not sig.empty:
            z = sig[["wilcoxon_p", "dm_p"]].to_numpy(dtype=float)
            text = [[("n/a" if not np.isfinite(v) else f"{v:.3g}") for v in row] for row in z]
            fig = go.Figure(
                go.Heatmap(
                    z=z,
                    x=["Wilcoxon p", "Diebold–Mariano p"],
                    y=sig["method"].astype(str),
                    text=text,
                    texttemplate="%{text}",
                    zmin=0.0,
                    zmax=0.2,
                    colorscale=[[0.0, "#1a9850"], [0.25, "#fee08b"], [1.0, "#f7f7f7"]],
                    colorbar={"title": "p"},
                )
            )
            fig.update_layout(
                title=f"p-values: {self.reference} vs each method ({self.metric}; green = significant at 5 %)",
                template="plotly_white",
                height=max(300, 40 * len(sig) + 150),
            )
            figs.append(("Significance", fig))
        return figs

    def to_html(self, path: Path, title: str = "Router evaluation") -> Path:
        """Write one self-contained HTML report (plotly.js embedded once; no network needed)."""
        import plotly.io as pio

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        parts: list[str] = []
        for i, (heading, fig) in enumerate(self.figures()):
            div = pio.to_html(fig, full_html=False, include_plotlyjs=(i == 0), default_width="100%")
            parts.append(f"<h2>{html.escape(heading)}</h2>\n{div}")
        tables = {
            "Overall": self.overall,
            "By demand pattern": self.by_pattern,
            "By product category": self.by_category,
            f"Significance ({self.metric})": self.significance,
            f"Win rate of {self.reference} ({self.metric})": self.win_rate,
        }
        for heading, frame in tables.items():
            if frame is None or frame.empty:
                continue
            table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0)
            parts.append(f"<h2>{html.escape(heading)}</h2>\n{table}")
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
        doc = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }}
th {{ background: #f4f4f4; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(self.summary_line())}</p>
<ul>{notes}</ul>
{chr(10).join(parts)}
</body>
</html>
"""
        path.write_text(doc, encoding="utf-8")
        return path


def evaluate(
    forecasts: pd.DataFrame,
    errors: pd.DataFrame,
    classes: pd.DataFrame,
    products: pd.DataFrame | None,
    reference: str = "router",
    metric: str = "mase",
    baseline: str = "Naive2",
    dm_h: int | None = None,
) -> Evaluation:
    """Compare ``reference`` with every other method in ``errors`` (and ``forecasts`` for the DM test).

    ``forecasts`` is the long backtest frame (unique_id, ds, cutoff, y, method, yhat) including the
    reference's rows and, if wanted, the classical rule's (:func:`classical_rule_forecasts`);
    ``errors`` the matching ``pointwise_errors`` frame (its ``scale`` column scales the DM loss).
    ``classes`` is indexed by unique_id with a ``pattern`` column; ``products`` has ``sku`` and
    ``category`` (None skips the per-category table).
    """
    methods = set(errors["method"])
    if reference not in methods:
        raise ValueError(f"reference method {reference!r} not in the errors frame; methods: {sorted(methods)}")
    notes = [
        f"Reference: {reference}. OWA is relative to {baseline} within each table"
        + ("" if baseline in methods else f" ({baseline} absent: OWA is NaN)")
        + ".",
        "Significance: Wilcoxon signed-rank on per-SKU mean errors and Diebold–Mariano (HLN-corrected) "
        "on the cross-sectional mean scaled absolute error per (cutoff, step); a winner is named only when "
        "both reject at 5 % in the same direction. p-values are not adjusted for multiple comparisons.",
    ]
    overall = _metric_table(errors, baseline)
    patterns = classes["pattern"] if "pattern" in classes else pd.Series(dtype=object)
    by_pattern = _grouped_table(errors, patterns, "pattern", baseline)
    if products is not None and "category" in products:
        category = products.set_index(products["sku"].astype(str))["category"]
        keyed = errors.assign(unique_id=errors["unique_id"].astype(str))
        by_category = _grouped_table(keyed, category, "category", baseline)
    else:
        by_category = pd.DataFrame()
    pointwise = pointwise_scaled_errors(forecasts, errors)
    sig = significance(errors, reference, metric, pointwise=pointwise, dm_h=dm_h)
    wins = win_rate(errors, reference, metric)
    return Evaluation(reference, overall, by_pattern, by_category, sig, wins, metric, notes)
