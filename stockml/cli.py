"""The ``stockml`` command line: demo data, validation, the pipeline, maintenance.

This module holds the app and the pipeline commands; the registry and status commands are in
:mod:`stockml.cli_registry`, orders and related products in :mod:`stockml.cli_orders`, the dashboards
in :mod:`stockml.cli_dashboards`, ``monitor`` in :mod:`stockml.cli_monitor`, and what they share (the
error guard, logging) in :mod:`stockml.cli_common`.

Every command prints a clear message and a non-zero exit code on bad input, never a
traceback (set ``STOCKML_DEBUG=1`` to see one). Knobs come from :class:`stockml.settings.Settings`,
read once per command and passed down.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockml import cli_orders, cli_registry
from stockml.cli_common import RUN_ID_HELP, configure_logging, fail, guard, new_run
from stockml.cli_orders import orders_line
from stockml.cli_report import console, print_ingest, print_router, print_summary
from stockml.settings import get_settings
from training.data.output_schema import OUTPUT_TABLES

app = typer.Typer(
    help="stockml: inventory analytics — classify, forecast and serve demand models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command("demo-data")
@guard
def demo_data(
    skus: Annotated[int, typer.Option(min=1, help="Number of products.")] = 300,
    weeks: Annotated[int, typer.Option(min=8, help="Weeks of history.")] = 156,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same catalogue.")] = 42,
    end: Annotated[str, typer.Option(help="Last day of history (a Sunday).")] = "2026-11-22",
    target: Annotated[
        str | None,
        typer.Option(help="Airflow connection id or database URI to write to (default: the embedded SQLite source)."),
    ] = None,
    schema: Annotated[str | None, typer.Option(help="Database schema for the tables (Postgres).")] = None,
    truth: Annotated[Path | None, typer.Option(help="Where to write the ground truth JSON.")] = None,
    clean: Annotated[bool, typer.Option(help="Leave out the few dirty rows meant for the validator.")] = False,
) -> None:
    """Write a realistic agro-inputs catalogue into a database.

    Tables: products, stock_movements, price_promotions (with planned promotions) and order_lines.
    """
    from stockml.connections import ensure_default_source, get_hook
    from training.data.demo import generate_catalogue
    from training.data.demo_orders import write_demo_orders
    from training.data.demo_prices import demo_price_promotions
    from training.data.store import write_source_tables

    s = get_settings(source_schema=schema)
    ensure_default_source(s.source_conn_id, s.default_source_db)
    with console.status(f"Generating {skus} SKUs x {weeks} weeks (seed {seed})..."):
        cat = generate_catalogue(skus, weeks, seed, end=end, dirty_rows=not clean)
    target = target or s.source_conn_id
    with console.status(f"Writing {len(cat.movements):,} movements to {target}..."):
        prices = demo_price_promotions(cat, horizon=s.horizon)  # planned promotions run past the history
        write_source_tables(get_hook(target), cat.products, cat.movements, s.source_schema, price_promotions=prices)
    truth_path = truth or s.ground_truth_path
    cat.write_truth(truth_path)
    orders = write_demo_orders(get_hook(target), cat, s.source_schema, truth_path)  # order_lines + planted rules
    counts = cat.truth_frame()["pattern"].value_counts().to_dict()
    console.print(
        f"[green]wrote[/] {len(cat.products)} products and {len(cat.movements):,} movements "
        f"to [bold]{target}[/] ({cat.start.date()} → {cat.end.date()}); patterns {counts}; "
        f"{orders['lines']:,} order lines in {orders['orders']:,} orders ({len(orders['planted_rules'])} planted "
        f"product associations); ground truth in {truth_path}"
    )


@app.command()
@guard
def validate(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    cutoff: Annotated[str | None, typer.Option(help="Last day of history (default: last movement).")] = None,
    run_id: Annotated[str | None, typer.Option(help=RUN_ID_HELP)] = None,
) -> None:
    """Read and validate the source; quarantine bad rows; aggregate to weekly demand."""
    from stockml.steps.ingest import ingest

    run = new_run(source, run_id)
    report = ingest(run, cutoff)
    print_ingest(report, run)


@app.command()
@guard
def run(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    run_id: Annotated[str | None, typer.Option(help=RUN_ID_HELP)] = None,
    cutoff: Annotated[str | None, typer.Option(help="Last day of history (default: last movement).")] = None,
    horizon: Annotated[int | None, typer.Option(min=1, max=104, help="Forecast horizon, weeks.")] = None,
    windows: Annotated[int | None, typer.Option(min=1, max=20, help="Backtest windows.")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated zoo methods (default: all).")] = None,
    router: Annotated[
        bool, typer.Option(help="Train, register and promote the router; forecast with the champion.")
    ] = True,
    trials: Annotated[int | None, typer.Option(min=0, help="Optuna trials for the router (0: no tuning).")] = None,
    lstm: Annotated[
        bool | None, typer.Option("--lstm/--no-lstm", help="Also train and register stockml-lstm (lstm_register).")
    ] = None,
) -> None:
    """Run the pipeline end to end: ingest → classify → backtest → AutoML → router → registry → forecast."""
    from stockml.pipeline import run_pipeline

    method_list = [m.strip() for m in methods.split(",")] if methods else None
    if method_list:
        from training.forecasting.methods import resolve_methods

        resolve_methods(method_list)
    r = new_run(
        source, run_id, horizon=horizon, backtest_windows=windows, methods=method_list, automl_trials=trials,
        lstm_register=lstm,
    )  # fmt: skip
    configure_logging(r.settings)
    with Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        summary = run_pipeline(r, progress, cutoff, router=router)
    print_summary(summary, r.settings)
    if summary.lstm:
        d = summary.lstm
        verdict = "champion" if d["promoted"] else "not promoted"
        console.print(f"  stockml-lstm v{d['candidate']}: {verdict} ({d['reason']})")
    if summary.orders:
        console.print(f"  {orders_line(summary.orders)}")


@app.command()
@guard
def train(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    run_id: Annotated[str | None, typer.Option(help=RUN_ID_HELP)] = None,
    trials: Annotated[int | None, typer.Option(min=0, help="Optuna trials (0: no tuning).")] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="AutoML time box, seconds.")] = None,
    mode: Annotated[str | None, typer.Option(help="select | combine (default: the better on the holdout).")] = None,
) -> None:
    """Train the router on a run's backtest (or a fresh one), register it as the challenger."""
    from stockml.steps.backtest import backtest_step
    from stockml.steps.classify import classify_step
    from stockml.steps.ingest import ingest
    from stockml.steps.router import train_router_step
    from stockml.steps.tuning import automl_step

    if mode not in (None, "select", "combine"):
        fail(f"--mode must be select or combine, not {mode!r}")
    r = new_run(source, run_id, automl_trials=trials, automl_timeout_s=timeout, router_mode=mode)
    configure_logging(r.settings)
    layout = r.layout
    if not layout.backtest_meta.exists():
        with console.status("ingest, classify and backtest..."):
            ingest(r)
            classify_step(r)
            backtest_step(r)
    with console.status("AutoML (Optuna)..."):
        automl_step(r)
    with console.status("training and registering the router..."):
        train_router_step(r)
    print_router(r.load_json(layout.router), None, r.settings)
    console.print(f"  run id {r.run_id}; report in {layout.router_report.html}")


@app.command()
@guard
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = 3000,
) -> None:
    """Serve the registry's champion over HTTP (BentoML): /forecast, /classify, /model_info, /admin/reload."""
    import subprocess

    exe = Path(sys.executable).with_name("bentoml")
    root = Path(__file__).resolve().parents[1]
    cmd = [str(exe), "serve", "serving.bentos.service:StockForecaster", "--host", host, "--port", str(port)]
    console.print(f"serving on http://{host}:{port} (API keys from STOCKML_AUTH__API_KEYS; Ctrl-C stops)")
    raise typer.Exit(subprocess.call(cmd, cwd=root))


@app.command()
@guard
def prune(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    days: Annotated[int | None, typer.Option(min=0, help="Retention of quarantined rows, days.")] = None,
) -> None:
    """Delete quarantined rows past their retention (what stock_maintenance runs daily)."""
    from stockml.run import Run
    from training.data.store import prune_quarantine

    r = Run(get_settings(source_conn_id=source))
    n = prune_quarantine(
        r.hook(), days if days is not None else r.settings.quarantine_retention_days, r.settings.source_schema
    )
    console.print(f"removed {n} quarantined rows")


@app.command()
@guard
def show(
    table: Annotated[str, typer.Argument(help=" | ".join(OUTPUT_TABLES))],
    run_id: Annotated[str | None, typer.Option(help="Only this run.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
) -> None:
    """Print rows of an output table."""
    from stockml.run import Run
    from training.data.store import read_output

    r = Run(get_settings(source_conn_id=source))
    df = read_output(r.hook(), table, run_id, r.settings.source_schema)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        console.print(df.head(limit).to_string() if not df.empty else f"{table} is empty")


@app.command("settings")
@guard
def settings_reference(
    markdown: Annotated[bool, typer.Option(help="Print the reference as the Markdown table README holds.")] = False,
) -> None:
    """Every setting: its environment variable, type, default and description."""
    from stockml.settings import settings_rows, settings_table

    if markdown:
        typer.echo(settings_table(), nl=False)
        return
    t = Table(title="stockml settings (environment variables)")
    for col in ("env variable", "type", "default", "description"):
        t.add_column(col)
    for row in settings_rows():
        t.add_row(*row)
    console.print(t)


cli_registry.add_commands(app)
cli_orders.add_commands(app)

# ops dashboards (Evidently UI) and the weekly report: stockml/cli_dashboards.py
from stockml.cli_dashboards import add_commands  # noqa: E402

add_commands(app, guard)

from stockml.cli_monitor import monitor  # noqa: E402

app.command("monitor")(guard(monitor))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
