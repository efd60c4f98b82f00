"""The weekly report: one self-contained HTML page of Plotly charts for the people who run the platform.

Frames in, HTML out (a plain library: the step in ``stockml.steps.weekly_report`` reads the frames
from the tables and the workspace). Sections: forecast accuracy by demand pattern (the latest
week and over time), drift share over time, the bandit's history (traffic split per alias and its
decisions), and the order policies' costs (the RL agent beside the classical policies). plotly.js is
embedded once, inline, so the file opens offline and as an MLflow artifact. A section whose frame is
empty says so instead of drawing an empty axis.
"""

from __future__ import annotations

import datetime as dt
import html
from dataclasses import dataclass, field

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

# the columns each frame must have (extra columns are ignored)
ACCURACY_COLUMNS = ("ds", "pattern", "mase")
DRIFT_COLUMNS = ("ds", "drift_share")
TRAFFIC_COLUMNS = ("ds", "alias", "requests")
DECISION_COLUMNS = ("created_at", "action", "champion_version", "challenger_version", "p_better")
COST_COLUMNS = ("cutoff_week", "policy", "expected_cost_per_period")
EVALUATION_COLUMNS = ("pattern", "policy", "cost_per_period")


@dataclass(frozen=True)
class WeeklyFrames:
    """What the report shows; each frame may be empty (that section then says there is nothing yet).

    - ``accuracy``: ``ds``, ``pattern``, ``mase`` (``mae`` optional): mean error of a week per pattern.
    - ``drift``: ``ds``, ``drift_share``: the share of drifted columns per monitoring run.
    - ``traffic``: ``ds``, ``alias``, ``requests``: forecast requests per alias and week.
    - ``decisions``: the bandit's decisions (``serving_bandit_decisions``).
    - ``costs``: ``cutoff_week``, ``policy``, ``expected_cost_per_period`` per SKU (``stock_orders``).
    - ``evaluation``: ``pattern``, ``policy``, ``cost_per_period`` per SKU and policy: every policy
      (the agent's included) simulated on the held-out year (the orders step's policy evaluation).
    """

    accuracy: pd.DataFrame
    drift: pd.DataFrame
    traffic: pd.DataFrame
    decisions: pd.DataFrame
    costs: pd.DataFrame
    evaluation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(EVALUATION_COLUMNS)))
    notes: dict[str, str] = field(default_factory=dict)  # per section: where its data came from

    def __post_init__(self) -> None:
        for name, columns in (
            ("accuracy", ACCURACY_COLUMNS),
            ("drift", DRIFT_COLUMNS),
            ("traffic", TRAFFIC_COLUMNS),
            ("decisions", DECISION_COLUMNS),
            ("costs", COST_COLUMNS),
            ("evaluation", EVALUATION_COLUMNS),
        ):
            frame = getattr(self, name)
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"weekly report: frame {name!r} lacks columns {missing} (has {list(frame.columns)})")


def _nothing(what: str) -> str:
    return f'<p class="empty">No {html.escape(what)} yet.</p>'


def _figure(fig: go.Figure) -> str:
    fig.update_layout(template="plotly_white", height=380, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    return pio.to_html(fig, full_html=False, include_plotlyjs=False)


def accuracy_section(accuracy: pd.DataFrame) -> list[str]:
    if accuracy.empty:
        return [_nothing("forecast accuracy")]
    a = accuracy.assign(ds=pd.to_datetime(accuracy["ds"]))
    by_week = a.groupby(["ds", "pattern"], as_index=False)["mase"].mean()
    latest = by_week[by_week["ds"] == by_week["ds"].max()].sort_values("mase")
    bar = px.bar(
        latest,
        x="pattern",
        y="mase",
        color="pattern",
        title=f"MASE by demand pattern, week of {latest['ds'].iloc[0]:%Y-%m-%d}",
    )
    line = px.line(by_week, x="ds", y="mase", color="pattern", markers=True, title="MASE by demand pattern over time")
    line.add_hline(y=1.0, line_dash="dot", annotation_text="naive (MASE 1)")
    return [_figure(bar), _figure(line)]


def drift_section(drift: pd.DataFrame, start: dt.date, end: dt.date) -> list[str]:
    if drift.empty:
        return [_nothing("drift reports")]
    d = drift.assign(ds=pd.to_datetime(drift["ds"])).sort_values("ds")
    fig = px.line(d, x="ds", y="drift_share", markers=True, title="Share of drifted columns over time")
    fig.update_yaxes(range=[-0.02, 1.05])
    fig.update_xaxes(range=[pd.Timestamp(start) - pd.Timedelta(days=3), pd.Timestamp(end) + pd.Timedelta(days=3)])
    return [_figure(fig)]


def bandit_section(traffic: pd.DataFrame, decisions: pd.DataFrame) -> list[str]:
    parts = []
    if traffic.empty:
        parts.append(_nothing("bandit traffic"))
    else:
        t = traffic.assign(ds=pd.to_datetime(traffic["ds"])).groupby(["ds", "alias"], as_index=False)["requests"].sum()
        t["share"] = t["requests"] / t.groupby("ds")["requests"].transform("sum")
        fig = px.area(t, x="ds", y="share", color="alias", title="Share of forecast requests per alias (per week)")
        parts.append(_figure(fig))
    if decisions.empty:
        parts.append(_nothing("bandit decisions"))
    else:
        d = decisions.assign(created_at=pd.to_datetime(decisions["created_at"], utc=True)).sort_values("created_at")
        fig = px.scatter(
            d,
            x="created_at",
            y="p_better",
            color="action",
            symbol="action",
            hover_data=["champion_version", "challenger_version"],
            title="Bandit decisions: P(challenger better) when it decided",
        )
        fig.update_traces(marker={"size": 12})
        fig.update_yaxes(range=[0, 1.05])
        parts.append(_figure(fig))
    return parts


def _by_policy(frame: pd.DataFrame, x: str, y: str, title: str, **kwargs) -> str:
    """Bars of ``y`` per ``x``, one colour per policy side by side."""
    fig = px.bar(frame, x=x, y=y, color="policy", barmode="group", title=title, **kwargs)
    fig.update_xaxes(type="category")
    return _figure(fig)


def costs_section(costs: pd.DataFrame, evaluation: pd.DataFrame) -> list[str]:
    parts = []
    c = costs.dropna(subset=["policy", "expected_cost_per_period"])
    if c.empty:
        parts.append(_nothing("order recommendations"))
    else:
        per = c.groupby(["cutoff_week", "policy"], as_index=False).agg(
            cost=("expected_cost_per_period", "sum"), skus=("expected_cost_per_period", "size")
        )
        title = "Expected cost per week of the recommended orders, by the policy chosen (sum over its SKUs)"
        parts.append(_by_policy(per, "cutoff_week", "cost", title, hover_data=["skus"]))
    e = evaluation.dropna(subset=["cost_per_period"])
    if not e.empty:
        per = e.groupby(["pattern", "policy"], as_index=False)["cost_per_period"].mean()
        title = "Cost per week on the held-out year, every policy on every SKU (mean per SKU)"
        parts.append(_by_policy(per, "pattern", "cost_per_period", title))
    return parts


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}}
h2{{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}} .empty{{color:#888}}
.note{{color:#666;font-size:.9rem}}</style>{plotlyjs}</head>
<body><h1>{title}</h1><p class="note">Generated {generated} UTC, covering {start} to {end}.</p>
{body}</body></html>
"""


def render(frames: WeeklyFrames, start: dt.date, end: dt.date, generated: dt.datetime | None = None) -> str:
    """The report as one HTML page (plotly.js inline: opens offline)."""
    sections = {
        "accuracy": ("Forecast accuracy", accuracy_section(frames.accuracy)),
        "drift": ("Drift", drift_section(frames.drift, start, end)),
        "bandit": ("The champion/challenger bandit", bandit_section(frames.traffic, frames.decisions)),
        "costs": (
            "Orders: the agent's and the classical policies' costs",
            costs_section(frames.costs, frames.evaluation),
        ),
    }
    body = []
    for key, (heading, parts) in sections.items():
        body.append(f'<h2 id="{key}">{html.escape(heading, quote=False)}</h2>')
        if key in frames.notes:
            body.append(f'<p class="note">{html.escape(frames.notes[key], quote=False)}</p>')
        body.extend(parts)
    plotlyjs = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return PAGE.format(
        title=f"stockml weekly report, week ending {end:%Y-%m-%d}",
        plotlyjs=plotlyjs,
        generated=f"{(generated or dt.datetime.now(dt.UTC)):%Y-%m-%d %H:%M}",
        start=f"{start:%Y-%m-%d}",
        end=f"{end:%Y-%m-%d}",
        body="\n".join(body),
    )
