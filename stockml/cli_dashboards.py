"""CLI commands of the ops dashboards: ``stockml dashboards [seed]`` and ``stockml report-weekly``.

Registered on the main app by :func:`add_commands` (``stockml.cli`` passes its error guard, so these
commands print one-line errors like every other command).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Annotated

import typer

from stockml.cli_report import console
from stockml.settings import get_settings

HOST_HELP = "Address to bind (default: STOCKML_DASHBOARDS_HOST)."
PORT_HELP = "Port (default: STOCKML_DASHBOARDS_PORT)."


def dashboards(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help=HOST_HELP)] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help=PORT_HELP)] = None,
    background: Annotated[
        bool, typer.Option(help="Start in the background, write <home>/dashboards.pid, return once it answers.")
    ] = False,
    stop: Annotated[bool, typer.Option(help="Stop the background UI (the pid file's).")] = False,
) -> None:
    """The Evidently UI on the workspace: the stockml project's drift, error-by-pattern and bandit panels."""
    if ctx.invoked_subcommand is not None:
        return
    from stockml import dashboards as dash

    s = get_settings(dashboards_host=host, dashboards_port=port)
    files = dash.Background(s.home / "dashboards.pid", s.home / "dashboards.log")
    if stop:
        stopped = dash.stop_background(files.pid_file)
        console.print("Evidently UI stopped" if stopped else "no background Evidently UI was running")
        return
    url = dash.ui_url(s.dashboards_host, s.dashboards_port)
    if dash.ui_is_up(url):
        console.print(f"Evidently UI: {url} (already up; workspace {s.workspace_dir})")
        return
    if background:
        pid = dash.start_background(s.workspace_dir, s.dashboards_host, s.dashboards_port, files)
        console.print(f"Evidently UI: {url} (pid {pid}, workspace {s.workspace_dir}, log {files.log_file})")
        return
    from monitoring.workspace import ensure_project

    ensure_project(s.workspace_dir)
    console.print(f"Evidently UI on {url} (workspace {s.workspace_dir}; Ctrl-C stops)")
    raise typer.Exit(subprocess.call(dash.ui_command(s.workspace_dir, s.dashboards_host, s.dashboards_port)))


def seed() -> None:
    """Store a first drift report: the published demand's last weeks against the champion's training window."""
    from stockml.dashboards import seed_drift

    s = get_settings()
    r = seed_drift(s)
    console.print(
        f"drift report stored in {s.workspace_dir} (project stockml, {r.timestamp:%Y-%m-%d}): "
        f"weeks {r.current_weeks[0]}..{r.current_weeks[1]} against {r.reference_weeks[0]}..{r.reference_weeks[1]}, "
        f"drift share {r.drift_share:.2f}"
    )


def report_weekly(
    date: Annotated[str | None, typer.Option(help="Last day the report covers, YYYY-MM-DD (default: today).")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=520, help="Weeks of history the report covers.")] = 12,
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
) -> None:
    """The weekly HTML report (accuracy, drift, bandit, agent costs) in <home>/reports, logged to MLflow."""
    import logging

    import mlflow  # noqa: F401  (imported first: mlflow sets its loggers' levels when it is imported)

    from stockml.steps.weekly_report import weekly_report_step

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its migrations' INFO lines are not news here
    out = weekly_report_step(get_settings(source_conn_id=source), date, weeks)
    console.print(f"weekly report: {out.path} (MLflow run {out.run_id} in experiment {out.experiment})")


def add_commands(app: typer.Typer, guard: Callable) -> None:
    """Register ``dashboards`` (with ``seed``) and ``report-weekly`` on ``app``."""
    sub = typer.Typer(no_args_is_help=False, invoke_without_command=True, help=dashboards.__doc__)
    sub.callback(invoke_without_command=True)(guard(dashboards))
    sub.command("seed")(guard(seed))
    app.add_typer(sub, name="dashboards")
    app.command("report-weekly")(guard(report_weekly))
