"""The ``stockml`` command line: demo data, validation, the pipeline, maintenance.

Every command prints a clear message and a non-zero exit code on bad input, never a
traceback (set ``STOCKML_DEBUG=1`` to see one). Knobs come from :class:`stockml.settings.Settings`,
read once per command and passed down.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockml.cli_report import console, print_ingest, print_router, print_summary
from stockml.settings import Settings, get_settings
from training.data.output_schema import OUTPUT_TABLES
from training.registry.names import ROUTER_MODEL

# Output rows are keyed by (pipeline, data cut-off week), not by the run id.
RUN_ID_HELP = "Run id (names the run folder; a run over the same data cut-off replaces the table rows)."

app = typer.Typer(
    help="stockml: inventory analytics — classify, forecast and serve demand models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _guard(fn):
    """Turn expected errors into one-line messages; keep tracebacks for STOCKML_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            if _debug():
                raise
            from stockml.connections import SourceConnectionError
            from training.data.source import SourceContractError
            from training.data.validate import NoValidRowsError
            from training.registry.mlflow_registry import PromotionError

            known = (
                SourceConnectionError, SourceContractError, NoValidRowsError, PromotionError, ValueError,
                FileNotFoundError,
            )  # fmt: skip
            if isinstance(exc, known):
                _fail(str(exc))
            _fail(f"{type(exc).__name__}: {exc} (run with STOCKML_DEBUG=1 for the traceback)")

    return wrapper


def _debug() -> bool:
    try:
        return get_settings().debug
    except Exception:  # invalid settings are the error being reported, not a reason to hide it
        return False


class CurrentStderrHandler(logging.StreamHandler):
    """A stderr handler that writes to whatever ``sys.stderr`` is when a record is emitted.

    ``logging.basicConfig`` binds its handler to the stream of the moment. When the CLI runs inside a
    host that swaps ``sys.stderr`` for a while (typer's ``CliRunner`` in tests, notebooks), that stream
    is closed afterwards, and every later record (often from a background thread: MLflow, the joblib
    pool) printed ``--- Logging error --- ValueError: I/O operation on closed file``."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # logging's own attribute, read at each emit
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # set by StreamHandler.__init__ and setStream: always the current one
        pass


def _logging(s: Settings) -> None:
    level = s.log_level
    handler = CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])  # (does nothing when the root already has handlers)
    # Importing Airflow (lazily, on the first hook) installs its own INFO handlers, which would
    # otherwise print the pipeline's info logs into the CLI output whatever the log level says.
    logging.getLogger("stockml").setLevel(level)
    # MLflow's informational chatter (DB migrations, cloudpickle and schema hints) is not news for CLI users.
    logging.getLogger("mlflow").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # MLflow's own knob, not ours


@app.command("demo-data")
@_guard
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
@_guard
def validate(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    cutoff: Annotated[str | None, typer.Option(help="Last day of history (default: last movement).")] = None,
    run_id: Annotated[str | None, typer.Option(help=RUN_ID_HELP)] = None,
) -> None:
    """Read and validate the source; quarantine bad rows; aggregate to weekly demand."""
    from stockml.steps.ingest import ingest

    run = _run(source, run_id)
    report = ingest(run, cutoff)
    print_ingest(report, run)


def _run(source: str | None, run_id: str | None, **overrides: object):
    from stockml.run import Run, new_run_id

    s = get_settings(source_conn_id=source, **overrides)
    return Run(s, run_id or new_run_id())


@app.command()
@_guard
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
    r = _run(
        source, run_id, horizon=horizon, backtest_windows=windows, methods=method_list, automl_trials=trials,
        lstm_register=lstm,
    )  # fmt: skip
    _logging(r.settings)
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
@_guard
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
        _fail(f"--mode must be select or combine, not {mode!r}")
    r = _run(source, run_id, automl_trials=trials, automl_timeout_s=timeout, router_mode=mode)
    _logging(r.settings)
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


@app.command("train-lstm")
@_guard
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

    r = _run(source, run_id, lstm_max_steps=steps)
    _logging(r.settings)
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


def _registry() -> Settings:
    """Settings, quiet logging and MLflow pointed at the configured registry."""
    from stockml.steps.registry import configure_mlflow

    s = get_settings()
    _logging(s)
    configure_mlflow(s)
    return s


@app.command()
@_guard
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

    s = _registry()
    with console.status("scoring candidate and champion on the same holdout..."):
        d = guarded_promote(s, name, version, tolerance, force)
    if d.promoted:
        console.print(f"[green]v{d.candidate} is now champion[/] of {name} ({d.reason}); by {d.actor}")
    else:
        console.print(f"[yellow]v{d.candidate} not promoted[/]: {d.reason}")
        raise typer.Exit(code=1 if d.reason != "already champion" else 0)


@app.command()
@_guard
def rollback(name: Annotated[str, typer.Option(help="Registered model name.")] = ROUTER_MODEL) -> None:
    """Move `champion` back to the version the current champion replaced."""
    from training.registry import mlflow_registry as reg

    s = _registry()
    d = reg.rollback(name, who=reg.actor(s.actor))
    console.print(f"[green]champion is v{d.candidate} again[/] (was v{d.previous_champion}); by {d.actor}")


@app.command()
@_guard
def models(name: Annotated[str, typer.Option(help="Registered model name.")] = ROUTER_MODEL) -> None:
    """List registered versions with their aliases, holdout MASE, data window and promotion notes."""
    from stockml.steps.registry import registry_summary

    s = _registry()
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
@_guard
def status() -> None:
    """What serves now: the champion, and the latest training run's router figures and decision."""
    from stockml.layout import read_pointer
    from stockml.steps.registry import registry_summary

    s = _registry()
    console.print(timesfm_line())
    served = read_pointer(s.layout.latest_forecasts)
    if served is None:
        _fail("no forecasts published yet: run `make pipeline`, the stock_training DAG or `stockml run`")
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


@app.command()
@_guard
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
@_guard
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
@_guard
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


def orders_line(report: dict) -> str:
    """One line on the orders step for ``stockml run``."""
    if report.get("status") != "written":
        return f"orders: skipped ({report.get('reason')})"
    line = (
        f"orders: {report['with_order']} of {report['skus']} SKUs to order, in stock_orders; "
        f"policy per pattern {report['pattern_policy']}"
    )
    decision = report.get("promotion")
    if decision:
        verdict = "champion" if decision["promoted"] else "not promoted"
        line += f"; stockml-rl-agent v{decision['candidate']}: {verdict} ({decision['reason']})"
    return line


@app.command()
@_guard
def orders(
    sku: Annotated[str | None, typer.Option(help="Only this SKU.")] = None,
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most rows to print.")] = 30,
) -> None:
    """Recommended orders (stock_orders, the latest data cut-off): quantity, the policy behind it, its cost."""
    from stockml.run import Run
    from stockml.steps.orders import read_orders

    r = Run(get_settings(source_conn_id=source))
    rows = read_orders(r)
    if rows is None:
        _fail("stock_orders is empty: run the pipeline first (`stockml run` or the stock_training DAG)")
    if sku is not None:
        rows = rows[rows["sku"] == sku]
        if rows.empty:
            _fail(f"no recommendation for SKU {sku!r}: unknown SKU, or one without enough history (see `stockml run`)")
    rows = rows.sort_values(["order_qty", "sku"], ascending=[False, True], na_position="last")
    first = rows.iloc[0]
    t = Table(title=f"Recommended orders · cut-off {first['cutoff_week']} · as of week {first['as_of_week']}")
    columns = ["sku", "on hand", "order qty", "policy", "cost/week", "model"] + (["reason"] if sku else [])
    for col in columns:
        t.add_column(col, justify="left" if col in ("sku", "policy", "reason", "model") else "right")
    for row in rows.head(limit).itertuples():
        qty = "-" if pd.isna(row.order_qty) else f"{row.order_qty:,.0f}"
        cost = "-" if pd.isna(row.expected_cost_per_period) else f"{row.expected_cost_per_period:,.2f}"
        version = "" if row.model_version is None or pd.isna(row.model_version) else f"v{row.model_version}"
        cells = [row.sku, f"{row.on_hand:,.0f}", qty, str(row.policy or "-"), cost, version]
        t.add_row(*cells, *([str(row.reason or "")] if sku else []))
    console.print(t)
    if len(rows) > limit:
        console.print(f"... {len(rows) - limit} more (--limit); `--sku S` shows why a policy answered")


@app.command()
@_guard
def related(
    sku: Annotated[str, typer.Argument(help="The SKU whose related products to print.")],
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Most related products to print.")] = 20,
) -> None:
    """Products bought together with SKU (stock_related, the latest data cut-off), strongest first."""
    from stockml.run import Run
    from training.data.related_store import latest_related

    r = Run(get_settings(source_conn_id=source))
    hook = r.hook()
    rules = latest_related(hook, r.settings.source_schema)
    if rules is None:
        _fail(
            "stock_related is empty: the source has no order_lines table, or no ingest has run "
            "(`stockml validate`, the stock_ingest DAG or `stockml run`)"
        )
    mine = rules[rules["sku"] == sku]
    names = _product_names(hook, r.settings)
    if mine.empty:
        if names and sku not in names:
            _fail(f"unknown SKU {sku!r}: it is not in the products table")
        console.print(
            f"{sku} has no related products (no pair passed the thresholds over the data cut-off "
            f"{rules['cutoff_week'].iloc[0]})"
        )
        return
    t = Table(title=f"Bought with {sku} {names.get(sku, '')} · cut-off {mine['cutoff_week'].iloc[0]}")
    for col in ("related sku", "name", "confidence", "lift", "support"):
        t.add_column(col, justify="left" if col in ("related sku", "name") else "right")
    for row in mine.sort_values(["confidence", "lift"], ascending=False).head(limit).itertuples():
        name = names.get(row.related_sku, "")
        t.add_row(row.related_sku, name, f"{row.confidence:.2f}", f"{row.lift:.1f}", f"{row.support:.4f}")
    console.print(t)


def _product_names(hook, s: Settings) -> dict[str, str]:
    """{sku: name} from the products query (empty when it cannot be read: the rules print without names)."""
    from training.data.source import PRODUCT_COLUMNS, SourceQueries, _get_df, _require

    sql = SourceQueries.default(s.source_schema, s.products_query).products
    try:
        products = _require(_get_df(hook, sql), PRODUCT_COLUMNS, "products", sql)
    except Exception:
        return {}
    return dict(zip(products["sku"].astype(str), products["name"].astype(str), strict=True))


@app.command("settings")
@_guard
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


# ops dashboards (Evidently UI) and the weekly report: stockml/cli_dashboards.py
from stockml.cli_dashboards import add_commands  # noqa: E402

add_commands(app, _guard)

from stockml.cli_monitor import monitor  # noqa: E402

app.command("monitor")(_guard(monitor))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
