"""The run folder and the home folder as a declared interface: every artifact path is built here.

A pipeline run keeps its artifacts in ``<home>/runs/<run id>/`` (:class:`RunLayout`); the home
folder holds the runs, the embedded databases and the *latest* pointers that tell training,
monitoring and ``stockml status`` which run's demand and forecasts are current
(:class:`HomeLayout`). Nothing else in the code base spells these file names: a step, the CLI,
maintenance, the Airflow plugin and the tests all ask a layout for the path.

A pointer is a small JSON file ``{"run_id": ..., "dir": ...}`` written by :func:`write_pointer`
and read by :func:`read_pointer` (the one writer and the one reader).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.registry.names import ROUTER_MODEL


@dataclass(frozen=True)
class RouterReport:
    """The router's evaluation report folder (``router_report/``), logged with the model."""

    root: Path

    @property
    def html(self) -> Path:
        return self.root / "evaluation.html"

    def table(self, name: str) -> Path:
        """One of the evaluation's frames as CSV (``overall.csv``, ``by_pattern.csv``, ...)."""
        return self.root / f"{name}.csv"

    @property
    def forecast_plot(self) -> Path:
        return self.root / "forecast_vs_actual.png"

    @property
    def error_by_pattern_plot(self) -> Path:
        return self.root / "error_by_pattern.png"


@dataclass(frozen=True)
class RunLayout:
    """Every artifact of one pipeline run, under ``root`` (``<home>/runs/<run id>``)."""

    root: Path

    # ingest
    @property
    def demand(self) -> Path:
        return self.root / "demand.parquet"

    @property
    def products(self) -> Path:
        return self.root / "products.parquet"

    @property
    def weekly_regressors(self) -> Path:
        """Weekly regressors (unique_id, ds, unit_price, on_promotion) from the optional price_promotions table;
        absent when the source has none. Published and adopted with the demand when present."""
        return self.root / "weekly_regressors.parquet"

    @property
    def inventory(self) -> Path:
        """Weekly inventory (unique_id, ds, on_hand, receipts, censored) on the demand's weeks
        (:mod:`training.data.inventory`); published and adopted with the demand."""
        return self.root / "inventory.parquet"

    @property
    def ingest_report(self) -> Path:
        return self.root / "ingest.json"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine.csv"

    @property
    def demand_files(self) -> tuple[Path, Path, Path]:
        """What an ingest publishes and a training run adopts: demand, products, ingest report."""
        return (self.demand, self.products, self.ingest_report)

    # classify
    @property
    def classes(self) -> Path:
        return self.root / "classes.parquet"

    # tuning and backtest
    @property
    def zoo_params(self) -> Path:
        return self.root / "zoo_params.json"

    @property
    def backtest_forecasts(self) -> Path:
        return self.root / "backtest_forecasts.parquet"

    @property
    def backtest_errors(self) -> Path:
        return self.root / "backtest_errors.parquet"

    @property
    def backtest_meta(self) -> Path:
        return self.root / "backtest.json"

    @property
    def forecast_plot(self) -> Path:
        return self.root / "forecast_vs_actual.png"

    @property
    def accuracy_by_method(self) -> Path:
        return self.root / "accuracy_by_method.csv"

    @property
    def accuracy_by_pattern(self) -> Path:
        return self.root / "accuracy_by_pattern.csv"

    # router
    @property
    def automl(self) -> Path:
        return self.root / "automl.json"

    @property
    def router(self) -> Path:
        """The registered router version and its holdout figures (JSON)."""
        return self.root / "router.json"

    @property
    def router_model(self) -> Path:
        """The trained router model as saved by the router step: a folder (manifest, XGBoost JSON, parquet)."""
        return self.root / "router_model"

    @property
    def router_report(self) -> RouterReport:
        return RouterReport(self.root / "router_report")

    @property
    def drift_reference(self) -> Path:
        """The drift check's reference rows (``monitoring.drift`` features at the end of the training
        window), logged beside the registered router: a folder holding ``features.parquet``."""
        return self.root / "drift_reference"

    @property
    def promotion(self) -> Path:
        return self.root / "promotion.json"

    def promotion_of(self, model_name: str) -> Path:
        """The promotion decision of ``model_name`` in this run (the router's is ``promotion.json``)."""
        return self.promotion if model_name == ROUTER_MODEL else self.root / f"promotion.{model_name}.json"

    # order recommendations (rl_agent/)
    @property
    def orders(self) -> Path:
        """The orders step's report: policies per pattern, the agent's registered version, the guardrail (JSON)."""
        return self.root / "orders.json"

    @property
    def rl_agent_model(self) -> Path:
        """The trained RL agent (``policy.pt`` state_dict + ``agent.json``) and the tuned classical parameters."""
        return self.root / "rl_agent"

    @property
    def policy_evaluation(self) -> Path:
        """Held-out cost, fill rate, service and stock per SKU and policy (CSV)."""
        return self.root / "policy_evaluation.csv"

    @property
    def policy_patterns(self) -> Path:
        """The same per demand pattern, with 95 % intervals over seeds (CSV)."""
        return self.root / "policy_by_pattern.csv"

    # the LSTM on its own (stockml-lstm)
    @property
    def lstm(self) -> Path:
        """The registered stockml-lstm version and its holdout score (JSON)."""
        return self.root / "lstm.json"

    @property
    def lstm_model(self) -> Path:
        """The LSTM as registered: a folder (manifest, torch state_dict, JSON config)."""
        return self.root / "lstm_model"

    # forecast
    @property
    def forecast_meta(self) -> Path:
        return self.root / "forecast.json"

    @property
    def forecasts(self) -> Path:
        return self.root / "forecasts.parquet"

    @property
    def selection(self) -> Path:
        return self.root / "selection.csv"

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text())

    def write_json(self, path: Path, payload: dict) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, default=str))
        return path


@dataclass(frozen=True)
class HomeLayout:
    """The state folder (``STOCKML_HOME``): runs, embedded databases, latest pointers, failures."""

    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, folder_name: str) -> RunLayout:
        return RunLayout(self.runs / folder_name)

    @property
    def latest_demand(self) -> Path:
        """Pointer to the run whose weekly demand training picks up (written by ingest)."""
        return self.root / "latest_demand.json"

    @property
    def latest_forecasts(self) -> Path:
        """Pointer to the run whose forecasts are in service (written by the champion forecast)."""
        return self.root / "latest_forecasts.json"

    @property
    def pointers(self) -> tuple[Path, Path]:
        return (self.latest_demand, self.latest_forecasts)

    @property
    def failures(self) -> Path:
        """One JSON line per failed Airflow task (the DAGs' failure callback)."""
        return self.root / "failures.jsonl"

    @property
    def source_db(self) -> Path:
        return self.root / "source.db"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def ground_truth(self) -> Path:
        return self.root / "demo_ground_truth.json"


def write_pointer(pointer: Path, run_id: str, run_dir: Path) -> Path:
    """Point ``pointer`` (a :class:`HomeLayout` pointer) at a run folder."""
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"run_id": run_id, "dir": str(Path(run_dir).resolve())}))
    return pointer


def read_pointer(pointer: Path) -> RunLayout | None:
    """The run folder ``pointer`` refers to, or None when nothing was published yet."""
    if not pointer.exists():
        return None
    return RunLayout(Path(json.loads(pointer.read_text())["dir"]))
