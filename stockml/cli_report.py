"""What the CLI prints: the ingest report, the pipeline's summary tables, the router's figures."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from stockml.settings import Settings

console = Console()


def print_ingest(report: dict, run) -> None:
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


def print_summary(summary, settings: Settings) -> None:
    print_ingest(summary.ingest, summary)
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
    layout = settings.layout.run(Path(summary.run_dir).name)
    files = (layout.forecast_plot, layout.accuracy_by_method, layout.accuracy_by_pattern, layout.forecasts)
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
        print_router(summary.router, summary.promotion, settings)
    if bt.excluded:
        console.print(f"{len(bt.excluded)} SKUs too short to backtest were forecast with their pattern's best method.")
    console.print(
        f"\n[green]Outputs[/]: tables stock_classes, stock_forecasts, stock_quarantine in "
        f"[bold]{settings.source_conn_id}[/] (run_id {summary.run_id}); files in [bold]{summary.run_dir}[/] "
        f"({', '.join(p.name for p in files)})"
    )


def print_router(router: dict, promotion: dict | None, settings: Settings) -> None:
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
