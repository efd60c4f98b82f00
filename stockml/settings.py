"""One settings object for every knob (env prefix ``STOCKML_``).

Defaults give the embedded set-up: all state under ``.stockml/`` in the working
directory and the source at the Airflow connection ``stockml_source``, which falls
back to the SQLite demo database when the connection is not defined.
"""

from __future__ import annotations

import types
import typing
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockml.layout import HomeLayout
from stockml.settings_serving import AuthSettings, BanditSettings, BatchSettings, NotifySettings, ServingSettings
from training.registry.names import ROUTER_MODEL

QUEUE_PATTERN = "^[a-z][a-z0-9_-]*$"  # what a `--queues a,b` list and the Terraform variable accept


class AirflowSettings(BaseModel):
    """The Celery queues the DAGs send their tasks to (``STOCKML_AIRFLOW__*``).

    Read when the DAG processor parses the DAG files (a task's queue is part of the parsed DAG), and
    by ``infra/airflow/start-distributed.sh`` for the queues its workers consume: both must see the
    same values. Tasks that set no queue go to Airflow's own ``AIRFLOW__OPERATORS__DEFAULT_QUEUE``.
    The embedded set-up (LocalExecutor) ignores queues.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    training_queue: str = Field(
        default="training",
        pattern=QUEUE_PATTERN,
        description="Celery queue of the heavy tasks (tuning, backtest, AutoML, router, LSTM, RL agent, forecasts): "
        "workers with the cores for them consume it.",
    )
    maintenance_queue: str = Field(
        default="maintenance",
        pattern=QUEUE_PATTERN,
        description="Celery queue of the light housekeeping tasks (stock_maintenance's pruning, stock_reports).",
    )


class Settings(BaseSettings):
    """Platform configuration, read from ``STOCKML_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="STOCKML_", extra="ignore", env_nested_delimiter="__")

    home: Path = Field(
        default=Path(".stockml"),
        description="State folder: run folders, latest pointers, embedded SQLite databases (source, MLflow, Optuna).",
    )
    source_conn_id: str = Field(default="stockml_source", description="Airflow connection of the source DB.")
    source_schema: str | None = Field(
        default=None, description="Database schema holding the source and output tables (Postgres/Hive)."
    )
    products_query: str | None = Field(
        default=None, description="SQL returning the products contract; default reads table `products`."
    )
    movements_query: str | None = Field(
        default=None,
        description="SQL returning the stock_movements contract (e.g. a view such as vw_saldo_estoque).",
    )
    price_promotions_query: str | None = Field(
        default=None,
        description="SQL returning the optional price_promotions contract; default reads table `price_promotions` "
        "(absent is normal).",
    )
    cutoff: str | None = Field(default=None, description="Last day of history to use (default: today).")
    horizon: int = Field(default=13, ge=1, le=104, description="Forecast horizon in weeks.")
    season_length: int = Field(default=52, ge=1, description="Seasonal period in weeks.")
    backtest_windows: int = Field(default=3, ge=1, description="Rolling-origin windows in backtests.")
    methods: list[str] | None = Field(default=None, description="Zoo methods to run (default: all).")
    n_jobs: int = Field(default=-1, description="Processes for forecasting (-1: all cores).")
    timesfm_checkpoint: Path | None = Field(
        default=None,
        description="Local TimesFM 2.5 checkpoint (folder with model.safetensors, or the file); never downloaded. "
        "Unset: the Hugging Face cache, else TimesFM is unavailable.",
    )
    engine: typing.Literal["pandas", "spark"] = Field(
        default="pandas",
        description="Where the zoo's backtest and forecast steps run: pandas (this process, statsforecast's worker "
        "pool) or spark "
        "(statsforecast once per partition of a Spark session; global members fitted on the driver, their "
        "prediction mapped over partitions). Needs Java 17+.",
    )
    spark_master: str = Field(
        default="local[*]",
        description="Spark master of the spark engine (local[*]: this machine's cores; spark://host:7077, yarn, "
        "k8s://...).",
    )
    spark_shuffle_partitions: int = Field(
        default=8, ge=1, description="spark.sql.shuffle.partitions of the spark engine (a few per core of the cluster)."
    )
    abc_cutoffs: tuple[float, float] = Field(
        default=(0.80, 0.95), description="Cumulative revenue shares closing classes A and B (the rest is C)."
    )
    xyz_cutoffs: tuple[float, float] = Field(
        default=(0.5, 1.0), description="Coefficient-of-variation bounds of classes X and Y (above: Z)."
    )
    adi_cutoff: float = Field(
        default=1.32, gt=0, description="Syntetos-Boylan ADI cut-off: at or above it demand is intermittent/lumpy."
    )
    cv2_cutoff: float = Field(
        default=0.49, ge=0, description="Syntetos-Boylan CV² cut-off: at or above it demand is erratic/lumpy."
    )
    anomaly_contamination: float = Field(
        default=0.05, gt=0, lt=0.5, description="Share of SKUs the isolation forest flags as anomalous."
    )
    quarantine_retention_days: int = Field(
        default=90, ge=0, description="Quarantined source rows older than this are deleted daily."
    )
    run_retention_days: int = Field(default=30, ge=0, description="Run folders older than this are pruned daily.")
    retrain_mase_threshold: float = Field(
        default=1.5,
        gt=0,
        description="Deprecated: an absolute live-MASE ceiling, still reported by `stockml.maintenance."
        "forecast_performance`; monitoring now judges degradation against the champion's backtest MASE "
        "(degradation_ratio, degradation_weeks).",
    )
    order_lines_query: str | None = Field(
        default=None,
        description="SQL returning the optional order_lines contract; default: table `order_lines` if it exists.",
    )
    related_min_support: float = Field(
        default=0.001, gt=0, le=1, description="Related products: least share of orders holding both SKUs."
    )
    related_min_confidence: float = Field(
        default=0.2, ge=0, le=1, description="Related products: least share of a SKU's orders that hold the other."
    )
    related_min_lift: float = Field(
        default=3.0, ge=0, description="Related products: least lift (confidence over the other SKU's own support)."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI (default: sqlite:///<home>/mlflow.db)."
    )
    mlflow_experiment: str = Field(default=ROUTER_MODEL, description="MLflow experiment for router runs.")
    optuna_storage: str | None = Field(
        default=None, description="Optuna study storage URL (default: sqlite:///<home>/optuna.db; Postgres works)."
    )
    automl_trials: int = Field(default=20, ge=0, description="Optuna trials per training run (0: no tuning).")
    zoo_trials: int = Field(
        default=10, ge=0, description="Optuna trials tuning TSB on intermittent/lumpy SKUs (0: defaults)."
    )
    automl_timeout_s: float = Field(default=120, gt=0, description="Time box for Optuna per training run.")
    router_mode: str | None = Field(
        default=None, description="select | combine; default: whichever is better on the holdout window."
    )
    router_metric: str = Field(
        default="mase",
        pattern="^(mase|owa)$",
        description="Error the router minimises: mase (inventory) or owa (M4; favours zeros on intermittent SKUs).",
    )
    router_top_k: int = Field(default=2, ge=1, description="Methods a combine-mode router blends per SKU.")
    git_commit: str | None = Field(
        default=None, description="Commit recorded on registered models (default: `git rev-parse HEAD`; set in images)."
    )
    actor: str | None = Field(
        default=None, description="Who or what promotes and trains, recorded in the registry (default: user@host)."
    )
    log_level: str = Field(
        default="WARNING",
        pattern="^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="Log level of the CLI and the pipeline's loggers.",
    )
    debug: bool = Field(default=False, description="Show the traceback of a failed CLI command (1/true).")
    lstm_register: bool = Field(
        default=False,
        description="Train the LSTM on its own in every pipeline run and register it as stockml-lstm "
        "(challenger; champion through the promotion guardrail). Off by default: it adds an LSTM fit to each run.",
    )
    lstm_max_steps: int = Field(
        default=300, ge=1, description="Training steps of the registered LSTM (early stopping may end it sooner)."
    )
    orders: bool = Field(
        default=True,
        description="Recommend orders in every pipeline run (tune base-stock, (s,S) and capped base-stock per "
        "SKU, train the RL agent, evaluate them on the held-out year, write stock_orders).",
    )
    rl_mode: typing.Literal["lost_sales", "backorder"] = Field(
        default="lost_sales", description="Unmet demand is lost (lost_sales) or waits (backorder)."
    )
    rl_train_steps: int = Field(
        default=1_000_000,
        ge=0,
        description="PPO environment steps of the RL agent per run (0: classical policies only).",
    )
    rl_sample_skus: int = Field(
        default=200,
        ge=1,
        description="Products the RL agent trains on (a seeded sample; it serves the whole catalogue).",
    )
    rl_seed: int = Field(default=0, description="Seed of the agent's training and of the evaluation's replications.")
    rl_eval_seeds: int = Field(default=10, ge=2, description="Replications of the held-out year per policy (95 % CI).")
    rl_holdout_weeks: int = Field(default=52, ge=4, description="Weeks held out to evaluate the policies on.")
    rl_forecasts: typing.Literal["rolling", "none"] = Field(
        default="rolling",
        description="The RL agent's observation carries a forecast made the week before every week (rolling: the "
        "zoo's SES, CrostonSBA and TSB refitted at each origin, the best by recent error, conformal 80 % bound) "
        "or none.",
    )
    holding_rate_per_year: float = Field(
        default=0.25, gt=0, description="Holding cost per year as a fraction of unit cost."
    )
    shortage_cost_per_unit: float | None = Field(
        default=None, gt=0, description="Penalty per unit short (default: the margin, unit_price - unit_cost)."
    )
    rl_register: bool = Field(
        default=True,
        description="Register the trained agent as stockml-rl-agent (challenger; champion only when its held-out "
        "cost is not above the best classical policy's).",
    )
    promotion_tolerance: float = Field(
        default=0.0, ge=0, description="How much worse (relative MASE) a candidate may be and still be promoted."
    )
    # -- dashboards for ops (Evidently UI) and the weekly report
    evidently_workspace: Path | None = Field(
        default=None,
        description="Evidently workspace folder holding the stockml project's snapshots (default: <home>/evidently).",
    )
    dashboards_host: str = Field(
        default="127.0.0.1", description="Address the Evidently UI (`stockml dashboards`) binds."
    )
    dashboards_port: int = Field(
        default=8001, ge=1, le=65535, description="Port of the Evidently UI (8000 is Evidently's own default)."
    )
    reports_dir: Path | None = Field(
        default=None, description="Folder of the weekly HTML reports (default: <home>/reports)."
    )
    monitoring_experiment: str = Field(
        default="stockml-monitoring", description="MLflow experiment the weekly report is logged to."
    )
    # monitoring and self-healing (stock_monitoring)
    degradation_ratio: float = Field(
        default=1.2,
        gt=1,
        description="Forecasts have degraded when their weekly MASE is above this times the champion's "
        "backtest (holdout) MASE ...",
    )
    degradation_weeks: int = Field(
        default=2, ge=1, description="... for this many consecutive observed weeks (then retraining is due)."
    )
    retrain_debounce_hours: float = Field(
        default=72,
        ge=0,
        description="No second retraining event for the same reason within this many hours of the last one.",
    )
    drift_share: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Data drift when at least this share of the monitored features drifted (Evidently; "
        "0.2: one of the five year-over-year features).",
    )
    drift_window_weeks: int = Field(
        default=13,
        ge=2,
        description="Weeks of recent demand whose year-over-year features are compared with those at the end "
        "of the champion's training data.",
    )
    drift_threshold: float = Field(
        default=0.01, gt=0, lt=1, description="Per-feature p-value below which a feature has drifted."
    )
    drift_min_effect: float = Field(
        default=0.1,
        ge=0,
        description="... and only when its mean moved by at least this many reference standard deviations "
        "(from 30 products on; keeps a large catalogue's small quarter-to-quarter differences out).",
    )
    monitoring_service_url: str | None = Field(
        default=None,
        description="Base URL of the running service whose /metrics and /bandit monitoring reads "
        "(none: serving health is not checked).",
    )
    monitoring_service_api_key: str | None = Field(
        default=None, description="API key monitoring sends to the service's /bandit (when the service needs one)."
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description="The HTTP service (STOCKML_SERVING__*)."
    )
    bandit: BanditSettings = Field(
        default_factory=BanditSettings, description="Champion/challenger bandit (STOCKML_BANDIT__*)."
    )
    batch: BatchSettings = Field(default_factory=BatchSettings, description="Batch jobs (STOCKML_BATCH__*).")
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="Batch-job callbacks and e-mails (STOCKML_NOTIFY__*)."
    )
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="API keys, OIDC, rate limits (STOCKML_AUTH__*)."
    )
    airflow: AirflowSettings = Field(
        default_factory=AirflowSettings, description="Celery queues of the DAGs' tasks (STOCKML_AIRFLOW__*)."
    )

    @cached_property
    def default_source_db(self) -> Path:
        return self.layout.source_db

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.layout.mlflow_db.resolve()}"

    @property
    def artifact_root(self) -> Path:
        return self.layout.mlflow_artifacts.resolve()

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.layout.optuna_db.resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.layout.runs

    @property
    def ground_truth_path(self) -> Path:
        return self.layout.ground_truth

    @property
    def workspace_dir(self) -> Path:
        """The Evidently workspace folder (``evidently_workspace`` or ``<home>/evidently``)."""
        return self.evidently_workspace or self.home / "evidently"

    @property
    def reports_path(self) -> Path:
        """The weekly reports' folder (``reports_dir`` or ``<home>/reports``)."""
        return self.reports_dir or self.home / "reports"

    @property
    def layout(self) -> HomeLayout:
        """Paths under ``home``: runs, embedded databases, latest pointers."""
        return HomeLayout(self.home)


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI flags) on top.

    Also tells the TimesFM member where this process's checkpoint is (a machine-local path, so it is
    not a member parameter that would travel in a registered model's manifest)."""
    from training.forecasting.foundation import configure

    s = Settings(**{k: v for k, v in overrides.items() if v is not None})
    configure(s.timesfm_checkpoint)
    return s


# -- the settings reference (README's table is generated from here) ----------------------------------

TABLE_START = "<!-- settings-table:start -->"
TABLE_END = "<!-- settings-table:end -->"


def _type_name(annotation: object) -> str:
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join("..." if a is Ellipsis else _type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _default_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _section(annotation: object) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def settings_rows(model: type[BaseModel] | None = None, prefix: str | None = None) -> list[tuple[str, str, str, str]]:
    """(env variable, type, default, description) of every field, nested sections walked recursively.

    A field of a nested section ``serving: ServingSettings`` is ``STOCKML_SERVING__<FIELD>``
    (the settings object's ``env_nested_delimiter``, ``__``).
    """
    model = model or Settings
    config = getattr(model, "model_config", {})
    if prefix is None:
        prefix = str(config.get("env_prefix", ""))
    delimiter = str(Settings.model_config.get("env_nested_delimiter") or "__")
    rows = []
    for name, info in model.model_fields.items():
        env = f"{prefix}{name}".upper()
        section = _section(info.annotation)
        if section is not None:
            rows += settings_rows(section, f"{env}{delimiter}")
            continue
        if not info.description:
            raise ValueError(f"setting {model.__name__}.{name} has no description")
        default = info.get_default(call_default_factory=True)
        rows.append((env, _type_name(info.annotation), _default_text(default), info.description))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """The settings reference as a Markdown table (what README holds between the table markers)."""
    lines = ["| env variable | type | default | description |", "|---|---|---|---|"]
    for env, type_, default, description in settings_rows():
        default_cell = f"`{_cell(default)}`" if default else ""
        lines.append(f"| `{env}` | {_cell(type_)} | {default_cell} | {_cell(description)} |")
    return "\n".join(lines) + "\n"
