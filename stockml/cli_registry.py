"""Registry and status commands: ``train-lstm``, ``promote``, ``rollback``, ``models`` and ``status``.

What an ML engineer runs against the MLflow registry (and what serves now); registered on the main
app by :func:`add_commands`.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from stockml.cli_common import RUN_ID_HELP, configure_logging, fail, guard, new_run, registry_settings
from stockml.cli_orders import orders_line
from stockml.cli_report import console, print_router
from training.registry.names import ROUTER_MODEL

app = typer.Typer()


@app.command("train-lstm")
@guard
def train_lstm(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    run_id: Annotated[str | None, typer.Option(help=RUN_ID_HELP)] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="Training steps (default: lstm_max_steps).")] = None,
    promote_it: Annotated[
        bool, typer.Option("--promote/--no-promote", help="Promote it through the guardrail after registering.")
    ] = True,
) -> None:
    """Train the LSTM on its own, register it as `stockml-lstm` (challenger) and promote it through the guardrail."""
    from stockml.steps.ingest import ingest
    from stockml.steps.lstm import promote_lstm_step, train_lstm_step

    r = new_run(source, run_id, lstm_max_steps=steps)
    configure_logging(r.settings)
    if not r.layout.demand.exists():
        with console.status("ingest..."):
            ingest(r)
    with console.status("training and registering the LSTM..."):
        version = train_lstm_step(r)
    score = r.load_json(r.layout.lstm)["holdout_mase"]
    console.print(f"[green]{version.name} v{version.version}[/] registered as challenger; holdout MASE {score:.3f}")
    if promote_it:
        d = promote_lstm_step(r)
        verdict = "[green]now champion[/]" if d.promoted else "[yellow]not promoted[/]"
        console.print(f"  v{d.candidate} {verdict}: {d.reason}")
    console.print(f"  run id {r.run_id}")


@app.command()
@guard
def promote(
    version: Annotated[str | None, typer.Option(help="Version to promote (default: the challenger).")] = None,
    tolerance: Annotated[
        float | None, typer.Option(min=0, help="Allowed relative MASE loss vs the champion (0.02 = 2 %).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Skip the guardrails (the decision records it).")] = False,
    name: Annotated[str, typer.Option(help="Registered model name.")] = ROUTER_MODEL,
) -> None:
    """Move the `champion` alias to a version, only if it is not worse than the champion on the holdout."""
    from stockml.steps.promotion import promote as guarded_promote

    s = registry_settings()
    with console.status("scoring candidate and champion on the same holdout..."):
        d = guarded_promote(s, name, version, tolerance, force)
    if d.promoted:
        console.print(f"[green]v{d.candidate} is now champion[/] of {name} ({d.reason}); by {d.actor}")
    else:
        console.print(f"[yellow]v{d.candidate} not promoted[/]: {d.reason}")
        raise typer.Exit(code=1 if d.reason != "already champion" else 0)


@app.command()
@guard
def rollback(name: Annotated[str, typer.Option(help="Registered model name.")] = ROUTER_MODEL) -> None:
    """Move `champion` back to the version the current champion replaced."""
    from training.registry import mlflow_registry as reg

    s = registry_settings()
    d = reg.rollback(name, who=reg.actor(s.actor))
    console.print(f"[green]champion is v{d.candidate} again[/] (was v{d.previous_champion}); by {d.actor}")


@app.command()
@guard
def models(name: Annotated[str, typer.Option(help="Registered model name.")] = ROUTER_MODEL) -> None:
    """List registered versions with their aliases, holdout MASE, data window and promotion notes."""
    from stockml.steps.registry import registry_summary

    s = registry_settings()
    rows = registry_summary(name)
    if not rows:
        console.print(f"{name} has no versions in {s.tracking_uri}; run `stockml train`")
        return
    t = Table(title=f"{name} in {s.tracking_uri}")
    for col in rows[0]:
        t.add_column(col)
    for row in rows:
        t.add_row(*[str(v) for v in row.values()])
    console.print(t)


def timesfm_line() -> str:
    """One line on the TimesFM checkpoint: where it is, or that there is none and which setting names it."""
    from training.forecasting.foundation import CHECKPOINT_ENV, checkpoint_status

    st = checkpoint_status()
    if st.available:
        return f"TimesFM: checkpoint {st.path} ({'from ' + CHECKPOINT_ENV if st.source == 'setting' else st.source})"
    if st.source == "none":
        return f"TimesFM: no checkpoint configured (set {CHECKPOINT_ENV})"
    return f"TimesFM: checkpoint not found: {st.reason}"


@app.command()
@guard
def status() -> None:
    """What serves now: the champion, and the latest training run's router figures and decision."""
    from stockml.layout import read_pointer
    from stockml.steps.registry import registry_summary

    s = registry_settings()
    console.print(timesfm_line())
    served = read_pointer(s.layout.latest_forecasts)
    if served is None:
        fail("no forecasts published yet: run `make pipeline`, the stock_training DAG or `stockml run`")
    router = served.read_json(served.router) if served.router.exists() else None
    promotion = served.read_json(served.promotion) if served.promotion.exists() else None
    if router:
        print_router(router, promotion, s)
    champ = [r for r in registry_summary(ROUTER_MODEL) if "champion" in r["aliases"].split(",")]
    if champ:
        console.print(f"champion: {ROUTER_MODEL} v{champ[0]['version']} (holdout MASE {champ[0]['holdout_mase']})")
    fc = pd.read_parquet(served.forecasts)
    console.print(
        f"latest forecasts: {fc['sku'].nunique()} SKUs x {fc['step'].max()} weeks from {fc['ds'].min():%Y-%m-%d} "
        f"in stock_forecasts (run folder {served.root}; report {served.router_report.html})"
    )
    from stockml.steps.related import status_line

    console.print(status_line(served.read_json(served.ingest_report) if served.ingest_report.exists() else None))
    if served.orders.exists():
        console.print(orders_line(served.read_json(served.orders)))
    else:
        console.print("orders: not recommended by this run (STOCKML_ORDERS off, or a run from before the orders step)")


def add_commands(main: typer.Typer) -> None:
    """Register this module's commands on the ``stockml`` app."""
    main.registered_commands.extend(app.registered_commands)
