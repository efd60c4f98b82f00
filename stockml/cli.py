"""The ``stockml`` command line: demo data, validation, the pipeline, maintenance.

Every command prints a clear message and a non-zero exit code on bad input, never a
traceback (set ``STOCKML_DEBUG=1`` to see one).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stockml.settings import Settings, get_settings

app = typer.Typer(
    help="stockml: inventory analytics — classify, forecast and serve demand models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def _guard(fn):
    """Turn expected errors into one-line messages; keep tracebacks for STOCKML_DEBUG=1."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            if os.environ.get("STOCKML_DEBUG"):
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


def _logging() -> None:
    level = os.environ.get("STOCKML_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Importing Airflow (lazily, on the first hook) installs its own INFO handlers, which would
    # otherwise print the pipeline's info logs into the CLI output whatever STOCKML_LOG_LEVEL says.
    logging.getLogger("stockml").setLevel(level)
    # MLflow's informational chatter (DB migrations, cloudpickle and schema hints) is not news for CLI users.
    logging.getLogger("mlflow").setLevel(max(logging.WARNING, logging.getLevelName(level)))
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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
    """Write a realistic agro-inputs catalogue (products, stock_movements) into a database."""
    from stockml.connections import ensure_default_source, get_hook
    from training.data.demo import generate_catalogue
    from training.data.store import write_source_tables

    s = get_settings(source_schema=schema)
    ensure_default_source(s.source_conn_id, s.default_source_db)
    with console.status(f"Generating {skus} SKUs x {weeks} weeks (seed {seed})..."):
        cat = generate_catalogue(skus, weeks, seed, end=end, dirty_rows=not clean)
    target = target or s.source_conn_id
    with console.status(f"Writing {len(cat.movements):,} movements to {target}..."):
        write_source_tables(get_hook(target), cat.products, cat.movements, s.source_schema)
    truth_path = truth or s.ground_truth_path
    cat.write_truth(truth_path)
    counts = cat.truth_frame()["pattern"].value_counts().to_dict()
    console.print(
        f"[green]wrote[/] {len(cat.products)} products and {len(cat.movements):,} movements "
        f"to [bold]{target}[/] ({cat.start.date()} → {cat.end.date()}); patterns {counts}; "
        f"ground truth in {truth_path}"
    )


@app.command()
@_guard
def validate(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    cutoff: Annotated[str | None, typer.Option(help="Last day of history (default: last movement).")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (re-using one replaces its outputs).")] = None,
) -> None:
    """Read and validate the source; quarantine bad rows; aggregate to weekly demand."""
    from stockml.pipeline import ingest

    run = _run(source, run_id)
    report = ingest(run, cutoff)
    _print_ingest(report, run)


def _run(source: str | None, run_id: str | None, **overrides: object):
    from stockml.pipeline import Run, new_run_id

    s = get_settings(source_conn_id=source, **overrides)
    return Run(s, run_id or new_run_id())


def _print_ingest(report: dict, run) -> None:
    t = Table(title=f"Source validation · run {run.run_id}", show_header=False)
    for key in (
        "products_read",
        "movements_read",
        "movements_valid",
        "quarantined",
        "skus",
        "weeks",
        "first_week",
        "last_week",
    ):
        t.add_row(key.replace("_", " "), f"{report[key]:,}" if isinstance(report[key], int) else str(report[key]))
    for reason, n in report["quarantined_by_reason"].items():
        t.add_row(f"  quarantined: {reason}", str(n))
    t.add_row("SKUs with gaps > 26 weeks", str(report["skus_with_gaps"]))
    console.print(t)


@app.command()
@_guard
def run(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (re-using one replaces its outputs).")] = None,
    cutoff: Annotated[str | None, typer.Option(help="Last day of history (default: last movement).")] = None,
    horizon: Annotated[int | None, typer.Option(min=1, max=104, help="Forecast horizon, weeks.")] = None,
    windows: Annotated[int | None, typer.Option(min=1, max=20, help="Backtest windows.")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated zoo methods (default: all).")] = None,
    router: Annotated[
        bool, typer.Option(help="Train, register and promote the router; forecast with the champion.")
    ] = True,
    trials: Annotated[int | None, typer.Option(min=0, help="Optuna trials for the router (0: no tuning).")] = None,
) -> None:
    """Run the pipeline end to end: ingest → classify → backtest → AutoML → router → registry → forecast."""
    from stockml.pipeline import run_pipeline

    _logging()
    method_list = [m.strip() for m in methods.split(",")] if methods else None
    if method_list:
        from training.forecasting.methods import resolve_methods

        resolve_methods(method_list)
    r = _run(source, run_id, horizon=horizon, backtest_windows=windows, methods=method_list, automl_trials=trials)
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
    _print_summary(summary, r.settings)


def _print_summary(summary, settings: Settings) -> None:
    _print_ingest(summary.ingest, summary)
    pt = Table(title="Products per demand pattern")
    for col in ("pattern", "SKUs", "mean ADI", "mean CV²", "class A", "anomalous"):
        pt.add_column(col, justify="right")
    for pattern, row in summary.patterns_table().iterrows():
        pt.add_row(
            str(pattern),
            str(int(row.skus)),
            f"{row.mean_adi:.2f}",
            f"{row.mean_cv2:.2f}",
            str(int(row.A)),
            str(int(row.anomalous)),
        )
    console.print(pt)
    bt = summary.backtest
    at = Table(
        title=f"Backtest accuracy per method ({bt.n_windows} windows x {bt.h} weeks, "
        f"{bt.errors['unique_id'].nunique()} SKUs; sorted by MASE; OWA vs Naive2)"
    )
    for col in ("method", "sMAPE", "MASE", "OWA", "MAE", "bias"):
        at.add_column(col, justify="right")
    for method, row in bt.summary.sort_values("mase").iterrows():
        at.add_row(
            str(method), f"{row.smape:.2f}", f"{row.mase:.3f}", f"{row.owa:.3f}", f"{row.mae:.2f}", f"{row.bias:+.2f}"
        )
    console.print(at)
    best = summary.by_pattern_best()
    console.print(
        "Best method per pattern (by MASE; sMAPE rewards zero forecasts on intermittent demand): "
        + ", ".join(f"{p} → [bold]{r.method}[/] (MASE {r.mase:.3f})" for p, r in best.iterrows())
    )
    sel = summary.forecasts.groupby("sku")["method"].first().value_counts()
    label = "Router's top method per SKU" if summary.router else "Methods chosen per SKU"
    console.print(f"{label}: " + ", ".join(f"{m} {n}" for m, n in sel.items()))
    if summary.router:
        _print_router(summary.router, summary.promotion, settings)
    if bt.excluded:
        console.print(f"{len(bt.excluded)} SKUs too short to backtest were forecast with their pattern's best method.")
    console.print(
        f"\n[green]Outputs[/]: tables stock_classes, stock_forecasts, stock_quarantine in "
        f"[bold]{settings.source_conn_id}[/] (run_id {summary.run_id}); files in [bold]{summary.run_dir}[/] "
        "(forecast_vs_actual.png, accuracy_by_method.csv, accuracy_by_pattern.csv, forecasts.parquet)"
    )


def _print_router(router: dict, promotion: dict | None, settings: Settings) -> None:
    t = router["targets"]
    console.print(
        f"\n[bold]Router[/] ({router['mode']} mode; holdout window): MASE {t['router_mase']:.3f} vs best single "
        f"{router['best_single']} {t['best_single_mase']:.3f} (oracle {t['oracle_mase']:.3f}); OWA "
        f"{t['router_owa']:.3f} vs {t['best_single_owa']:.3f}; within 10 % of each SKU's best method on "
        f"{t['share_within_10pct_of_best']:.0%} of SKUs ("
        f"{t.get('share_within_10pct_of_best_all_windows', float('nan')):.0%} averaged over all windows)."
    )
    console.print(f"  {router['summary']}")
    console.print(
        f"  registered [bold]{router['name']}[/] v{router['version']} (alias challenger) in {settings.tracking_uri}"
    )
    if promotion:
        verdict = "[green]promoted to champion[/]" if promotion["promoted"] else "[yellow]not promoted[/]"
        console.print(f"  v{promotion['candidate']} {verdict}: {promotion['reason']}")


@app.command()
@_guard
def train(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Run id (re-using one replaces its outputs).")] = None,
    trials: Annotated[int | None, typer.Option(min=0, help="Optuna trials (0: no tuning).")] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="AutoML time box, seconds.")] = None,
    mode: Annotated[str | None, typer.Option(help="select | combine (default: the better on the holdout).")] = None,
) -> None:
    """Train the router on a run's backtest (or a fresh one), register it as the challenger."""
    from stockml import pipeline as p
    from stockml import router_pipeline as rp

    _logging()
    if mode not in (None, "select", "combine"):
        _fail(f"--mode must be select or combine, not {mode!r}")
    r = _run(source, run_id, automl_trials=trials, automl_timeout_s=timeout, router_mode=mode)
    if not (r.dir / "backtest.json").exists():
        with console.status("ingest, classify and backtest..."):
            p.ingest(r)
            p.classify_step(r)
            p.backtest_step(r)
    with console.status("AutoML (Optuna)..."):
        rp.automl_step(r)
    with console.status("training and registering the router..."):
        rp.train_router_step(r)
    _print_router(r.load_json("router.json"), None, r.settings)
    console.print(f"  run id {r.run_id}; report in {r.dir / 'router_report' / 'evaluation.html'}")


def _registry() -> Settings:
    """Settings, quiet logging and MLflow pointed at the configured registry."""
    from stockml.router_pipeline import configure_mlflow

    _logging()
    s = get_settings()
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
    name: Annotated[str, typer.Option(help="Registered model name.")] = "stockml-router",
) -> None:
    """Move the `champion` alias to a version, only if it is not worse than the champion on the holdout."""
    from training.registry import mlflow_registry as reg

    s = _registry()
    tol = s.promotion_tolerance if tolerance is None else tolerance
    with console.status("scoring candidate and champion on the same holdout..."):
        d = reg.promote(name, version, tol, force)
    if d.promoted:
        console.print(f"[green]v{d.candidate} is now champion[/] of {name} ({d.reason}); by {d.actor}")
    else:
        console.print(f"[yellow]v{d.candidate} not promoted[/]: {d.reason}")
        raise typer.Exit(code=1 if d.reason != "already champion" else 0)


@app.command()
@_guard
def rollback(name: Annotated[str, typer.Option(help="Registered model name.")] = "stockml-router") -> None:
    """Move `champion` back to the version the current champion replaced."""
    from training.registry import mlflow_registry as reg

    _registry()
    d = reg.rollback(name)
    console.print(f"[green]champion is v{d.candidate} again[/] (was v{d.previous_champion}); by {d.actor}")


@app.command()
@_guard
def models(name: Annotated[str, typer.Option(help="Registered model name.")] = "stockml-router") -> None:
    """List registered versions with their aliases, holdout MASE, data window and promotion notes."""
    from stockml.router_pipeline import registry_summary

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


@app.command()
@_guard
def status() -> None:
    """What serves now: the champion, and the latest training run's router figures and decision."""
    import json

    from stockml.router_pipeline import registry_summary

    s = _registry()
    pointer = s.home / "latest_forecasts.json"
    if not pointer.exists():
        _fail("no forecasts published yet: run `make pipeline`, the stock_training DAG or `stockml run`")
    run_dir = Path(json.loads(pointer.read_text())["dir"])
    router = json.loads((run_dir / "router.json").read_text()) if (run_dir / "router.json").exists() else None
    promotion = json.loads((run_dir / "promotion.json").read_text()) if (run_dir / "promotion.json").exists() else None
    if router:
        _print_router(router, promotion, s)
    champ = [r for r in registry_summary() if "champion" in r["aliases"].split(",")]
    if champ:
        console.print(f"champion: stockml-router v{champ[0]['version']} (holdout MASE {champ[0]['holdout_mase']})")
    fc = pd.read_parquet(run_dir / "forecasts.parquet")
    console.print(
        f"latest forecasts: {fc['sku'].nunique()} SKUs x {fc['step'].max()} weeks from {fc['ds'].min():%Y-%m-%d} "
        f"in stock_forecasts (run folder {run_dir}; report {run_dir / 'router_report' / 'evaluation.html'})"
    )


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
    console.print(f"serving on http://{host}:{port} (API keys from STOCKML_API_KEYS; Ctrl-C stops)")
    raise typer.Exit(subprocess.call(cmd, cwd=root))


@app.command()
@_guard
def prune(
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
    days: Annotated[int | None, typer.Option(min=0, help="Retention of quarantined rows, days.")] = None,
) -> None:
    """Delete quarantined rows past their retention (what stock_maintenance runs daily)."""
    from stockml.pipeline import Run
    from training.data.store import prune_quarantine

    r = Run(get_settings(source_conn_id=source))
    n = prune_quarantine(
        r.hook(), days if days is not None else r.settings.quarantine_retention_days, r.settings.source_schema
    )
    console.print(f"removed {n} quarantined rows")


@app.command()
@_guard
def show(
    table: Annotated[str, typer.Argument(help="stock_classes | stock_forecasts | stock_quarantine")],
    run_id: Annotated[str | None, typer.Option(help="Only this run.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    source: Annotated[str | None, typer.Option(help="Airflow connection id of the source.")] = None,
) -> None:
    """Print rows of an output table."""
    from stockml.pipeline import Run
    from training.data.store import read_output

    r = Run(get_settings(source_conn_id=source))
    df = read_output(r.hook(), table, run_id, r.settings.source_schema)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        console.print(df.head(limit).to_string() if not df.empty else f"{table} is empty")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
