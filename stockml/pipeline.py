"""The end-to-end pipeline, as steps that a CLI or an Airflow task can call one at a time.

ingest → classify → backtest → forecast. Each step reads what the previous one left in the
run folder (``.stockml/runs/<run_id>/``) and writes its outputs back to the source database
idempotently (``run_id`` in the key), so any step can be re-run on its own.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stockml.connections import ensure_default_source, get_hook
from stockml.settings import Settings
from training.classification.classify import ClassifyConfig, classify
from training.data.source import SourceQueries, read_source
from training.data.store import write_output
from training.data.validate import validate
from training.data.weekly import last_complete_week_start, to_weekly_demand
from training.forecasting.backtest import (
    BacktestResult,
    add_empirical_intervals,
    backtest,
    residual_quantiles,
)
from training.forecasting.metrics import insample_scales, summarise
from training.forecasting.zoo import ModelZoo

log = logging.getLogger("stockml.pipeline")
Progress = Callable[[str, int, int], None]
MODEL_VERSION = "zoo-selection-v1"


def _noop(step: str, done: int, total: int) -> None:
    return None


def new_run_id() -> str:
    return "manual__" + pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")


def safe_run_id(run_id: str) -> str:
    """A run id as a folder name (Airflow run ids carry ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


@dataclass
class Run:
    settings: Settings
    run_id: str = field(default_factory=new_run_id)

    def __post_init__(self) -> None:
        ensure_default_source(self.settings.source_conn_id, self.settings.default_source_db)

    @property
    def dir(self) -> Path:
        d = self.settings.runs_dir / safe_run_id(self.run_id)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def hook(self) -> Any:
        return get_hook(self.settings.source_conn_id)

    def engine(self) -> Any:
        return self.hook().get_sqlalchemy_engine()

    def write(self, table: str, df: pd.DataFrame) -> int:
        return write_output(self.hook(), table, df, self.run_id, self.settings.source_schema)

    def save_json(self, name: str, payload: dict) -> None:
        (self.dir / name).write_text(json.dumps(payload, indent=2, default=str))

    def load_json(self, name: str) -> dict:
        return json.loads((self.dir / name).read_text())


def ingest(run: Run, cutoff: str | None = None) -> dict:
    """Read the source through its hook, validate, quarantine, aggregate to weekly demand."""
    s = run.settings
    queries = SourceQueries.default(s.source_schema, s.products_query, s.movements_query)
    products, movements = read_source(run.hook(), queries)
    cutoff = cutoff or s.cutoff
    today = pd.Timestamp(cutoff) if cutoff else pd.Timestamp.now()
    result = validate(products, movements, today=today)
    quarantine = result.quarantine
    quarantine.to_csv(run.dir / "quarantine.csv", index=False)
    run.write("stock_quarantine", quarantine)
    demand = to_weekly_demand(result.movements, pd.Timestamp(cutoff) if cutoff else None)
    demand.to_parquet(run.dir / "demand.parquet", index=False)
    result.products.to_parquet(run.dir / "products.parquet", index=False)
    report = {
        **result.report,
        "skus": int(demand["unique_id"].nunique()),
        "weeks": int(demand["ds"].nunique()),
        "demand_rows": len(demand),
        "first_week": str(demand["ds"].min().date()),
        "last_week": str(demand["ds"].max().date()),
        "cutoff_week": str(last_complete_week_start(pd.Timestamp(cutoff)).date()) if cutoff else None,
    }
    run.save_json("ingest.json", report)
    publish_demand(run)
    log.info("ingest done", extra={"run_id": run.run_id, **{k: report[k] for k in ("skus", "quarantined")}})
    return report


def load_demand(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(run.dir / "demand.parquet"), pd.read_parquet(run.dir / "products.parquet")


def classify_step(run: Run) -> pd.DataFrame:
    s = run.settings
    demand, products = load_demand(run)
    cfg = ClassifyConfig(s.abc_cutoffs, s.xyz_cutoffs, s.adi_cutoff, s.cv2_cutoff, s.anomaly_contamination)
    classes = classify(demand, products, cfg)
    classes.to_parquet(run.dir / "classes.parquet")
    run.write("stock_classes", classes.reset_index())
    return classes


def zoo_params(run: Run) -> dict[str, dict]:
    """Hyper-parameters AutoML tuned for zoo members in this run (empty: the defaults)."""
    path = run.dir / "zoo_params.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _zoo(s: Settings, params: dict[str, dict] | None = None, methods: list[str] | None = None) -> ModelZoo:
    return ModelZoo(
        methods=methods or s.methods or None, season_length=s.season_length, n_jobs=s.n_jobs, params=params or {}
    )


def backtest_step(run: Run, progress: Progress = _noop, chunks: int = 8) -> BacktestResult:
    """Rolling-origin backtest of the zoo, in SKU chunks so long runs can report progress."""
    s = run.settings
    demand, _ = load_demand(run)
    try:
        result = backtest(
            demand, _zoo(s, zoo_params(run)), s.horizon, s.backtest_windows,
            progress=lambda done, total: progress("backtest", done, total), chunks=chunks,
        )  # fmt: skip
    except ValueError as exc:
        if "No series has" not in str(exc):
            raise
        raise ValueError(
            f"No SKU has enough history for {s.backtest_windows} backtest windows of {s.horizon} weeks; "
            "lower STOCKML_BACKTEST_WINDOWS or STOCKML_HORIZON."
        ) from exc
    forecasts, errors, excluded = result.forecasts, result.errors, result.excluded
    forecasts.to_parquet(run.dir / "backtest_forecasts.parquet", index=False)
    errors.to_parquet(run.dir / "backtest_errors.parquet", index=False)
    run.save_json("backtest.json", {"excluded": excluded, "h": s.horizon, "windows": s.backtest_windows})
    return result


def load_backtest(run: Run) -> BacktestResult:
    meta = run.load_json("backtest.json")
    errors = pd.read_parquet(run.dir / "backtest_errors.parquet")
    return BacktestResult(
        pd.read_parquet(run.dir / "backtest_forecasts.parquet"),
        errors,
        summarise(errors),
        meta["excluded"],
        meta["h"],
        meta["windows"],
    )


def forecast_step(run: Run, result: BacktestResult | None = None, progress: Progress = _noop) -> pd.DataFrame:
    """Forecast each SKU with the method that won its backtest (its pattern's winner if too short)."""
    s = run.settings
    demand, _ = load_demand(run)
    result = result or load_backtest(run)
    classes = pd.read_parquet(run.dir / "classes.parquet")
    patterns = classes["pattern"]
    chosen = result.best_method_per_sku()
    by_pattern = result.best_method_by(patterns)
    fallback = result.best_method()
    ids = demand["unique_id"].unique()
    selection = pd.Series(
        [chosen.get(u) or by_pattern.get(patterns.get(u), fallback) for u in ids], index=ids, name="method"
    )
    frames = []
    groups = list(selection.groupby(selection))
    # Every chosen member is fitted on the whole catalogue (a global one learns across it), then
    # forecasts the SKUs that chose it from their own history.
    zoo = _zoo(s, zoo_params(run), sorted(selection.unique()))
    zoo.horizon = s.horizon
    zoo.fit(demand)
    for i, (method, members) in enumerate(groups):
        progress("forecast", i, len(groups))
        frames.append(zoo.predict(s.horizon, panel=demand[demand["unique_id"].isin(members.index)], methods=[method]))
    progress("forecast", len(groups), len(groups))
    fc = pd.concat(frames, ignore_index=True)
    quantiles = residual_quantiles(result, patterns)
    fc = add_empirical_intervals(fc, quantiles, insample_scales(demand), patterns)
    fc = fc.rename(columns={"unique_id": "sku"}).assign(model_version=MODEL_VERSION)
    fc.to_parquet(run.dir / "forecasts.parquet", index=False)
    run.write("stock_forecasts", fc)
    selection.rename_axis("sku").to_frame().to_csv(run.dir / "selection.csv")
    return fc


@dataclass
class PipelineSummary:
    run_id: str
    run_dir: Path
    ingest: dict
    classes: pd.DataFrame
    backtest: BacktestResult
    forecasts: pd.DataFrame
    router: dict | None = None
    promotion: dict | None = None

    def patterns_table(self) -> pd.DataFrame:
        c = self.classes
        t = c.groupby("pattern").agg(skus=("adi", "size"), mean_adi=("adi", "mean"), mean_cv2=("cv2", "mean"))
        t["A"] = c[c["abc"] == "A"].groupby("pattern").size()
        t["anomalous"] = c[c["is_anomaly"]].groupby("pattern").size()
        return t.fillna(0)

    def by_pattern_best(self) -> pd.DataFrame:
        t = self.backtest.summary_by(self.classes["pattern"])
        return t.sort_values("mase").groupby("pattern").head(1).set_index("pattern")


def run_pipeline(
    run: Run, progress: Progress = _noop, cutoff: str | None = None, router: bool = True
) -> PipelineSummary:
    """ingest → classify → backtest → [AutoML → router → register → promote] → forecast.

    With ``router`` the forecasts come from the registry's champion (the new challenger if it
    passed the guardrails, else the champion already in place); without it, or when the
    catalogue is too small to train a router, from each SKU's best backtest method.
    """
    progress("ingest", 0, 1)
    report = ingest(run, cutoff)
    progress("ingest", 1, 1)
    progress("classify", 0, 1)
    classes = classify_step(run)
    progress("classify", 1, 1)
    if router:
        from stockml.router_pipeline import tune_zoo_step

        progress("zoo tuning", 0, 1)
        tune_zoo_step(run)
        progress("zoo tuning", 1, 1)
    result = backtest_step(run, progress)
    from stockml.plots import plot_backtest_samples

    plot_backtest_samples(result.forecasts, load_demand(run)[0], classes, run.dir / "forecast_vs_actual.png")
    result.summary.to_csv(run.dir / "accuracy_by_method.csv")
    result.summary_by(classes["pattern"]).to_csv(run.dir / "accuracy_by_pattern.csv", index=False)
    routed = promotion = None
    if router and result.n_windows >= 2 and result.errors["unique_id"].nunique() >= 10:
        from stockml import router_pipeline as rp

        progress("automl", 0, 1)
        rp.automl_step(run)
        progress("automl", 1, 1)
        rp.train_router_step(run, progress)
        routed = run.load_json("router.json")
        promotion = asdict(rp.promote_step(run))
        progress("forecast", 0, 1)
        forecasts = rp.forecast_with_champion(run)
        progress("forecast", 1, 1)
    else:
        if router:
            log.warning("too few SKUs or backtest windows to train a router; forecasting with per-SKU best methods")
        forecasts = forecast_step(run, result, progress)
    return PipelineSummary(run.run_id, run.dir, report, classes, result, forecasts, routed, promotion)


DEMAND_FILES = ("demand.parquet", "products.parquet", "ingest.json")


def publish_demand(run: Run) -> Path:
    """Point ``<home>/latest_demand.json`` at this run's weekly demand (what training picks up)."""
    pointer = run.settings.home / "latest_demand.json"
    pointer.write_text(json.dumps({"run_id": run.run_id, "dir": str(run.dir.resolve())}))
    return pointer


def adopt_demand(run: Run, source_dir: str | Path | None = None) -> dict:
    """Copy a published weekly demand into this run (the latest one by default).

    Training runs separately from ingestion (another DAG, another worker): it starts from a
    validated snapshot rather than re-reading the source, so the data a model was trained on
    is exactly the data the ingest run validated.
    """
    import shutil

    if source_dir is None:
        pointer = run.settings.home / "latest_demand.json"
        if not pointer.exists():
            raise FileNotFoundError(
                f"no published weekly demand ({pointer} is missing): "
                "run the stock_ingest DAG or `stockml validate` first"
            )
        source_dir = json.loads(pointer.read_text())["dir"]
    src = Path(source_dir)
    missing = [f for f in DEMAND_FILES if not (src / f).exists()]
    if missing:
        raise FileNotFoundError(f"{src} lacks {missing}; re-run the ingest")
    if src.resolve() != run.dir.resolve():
        for f in DEMAND_FILES:
            shutil.copy2(src / f, run.dir / f)
    return run.load_json("ingest.json")
