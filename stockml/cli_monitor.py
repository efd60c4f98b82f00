"""``stockml monitor``: the daily monitoring checks run now, their verdicts printed (or as JSON)."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer
from rich.table import Table

from stockml.cli_report import console
from stockml.settings import get_settings


def monitor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole report as JSON.")] = False,
    write: Annotated[
        bool, typer.Option(help="Also record the verdicts in stock_monitoring (as pipeline 'cli').")
    ] = False,
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
) -> None:
    """Run the monitoring checks now (quality, degradation, drift, decisions, serving) and print the verdicts.

    Nothing is retrained from here: the stock_monitoring DAG emits the retraining event.
    """
    from stockml.steps.monitoring import monitoring_step

    s = get_settings(source_conn_id=source)
    # Airflow's hooks install handlers on stdout: keep the pipeline's info lines out of --json.
    logging.getLogger("stockml").setLevel(s.log_level)
    report = monitoring_step(s, pipeline="cli", run_id="cli", write=write)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
        return
    if "checks" not in report:
        console.print(report["status"])
        return
    t = Table(title=f"monitoring of the demand up to {report['demand']['cutoff_week']}")
    for col in ("check", "flagged", "status"):
        t.add_column(col)
    for name, check in report["checks"].items():
        t.add_row(name, "yes" if check.get("flagged") else "no", str(check.get("status")))
    console.print(t)
    console.print(
        f"reasons: {', '.join(report['reasons']) or 'none'}; retraining due for: {', '.join(report['due']) or 'none'}"
    )
