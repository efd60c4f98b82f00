"""Decision commands: ``orders`` (stock_orders) and ``related`` (stock_related), and the orders summary line.

Registered on the main app by :func:`add_commands`.
"""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from stockml.cli_common import fail, guard
from stockml.cli_report import console
from stockml.settings import Settings, get_settings

app = typer.Typer()


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
@guard
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
        fail("stock_orders is empty: run the pipeline first (`stockml run` or the stock_training DAG)")
    if sku is not None:
        rows = rows[rows["sku"] == sku]
        if rows.empty:
            fail(f"no recommendation for SKU {sku!r}: unknown SKU, or one without enough history (see `stockml run`)")
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
@guard
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
        fail(
            "stock_related is empty: the source has no order_lines table, or no ingest has run "
            "(`stockml validate`, the stock_ingest DAG or `stockml run`)"
        )
    mine = rules[rules["sku"] == sku]
    names = _product_names(hook, r.settings)
    if mine.empty:
        if names and sku not in names:
            fail(f"unknown SKU {sku!r}: it is not in the products table")
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


def add_commands(main: typer.Typer) -> None:
    """Register this module's commands on the ``stockml`` app."""
    main.registered_commands.extend(app.registered_commands)
