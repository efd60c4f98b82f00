"""One settings object for every knob (env prefix ``STOCKML_``).

Defaults give the embedded set-up: all state under ``.stockml/`` in the working
directory and the source at the Airflow connection ``stockml_source``, which falls
back to the SQLite demo database when the connection is not defined.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stockml.settings_serving import AuthSettings, BanditSettings, BatchSettings, ServingSettings


class Settings(BaseSettings):
    """Platform configuration, read from ``STOCKML_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="STOCKML_", extra="ignore", env_nested_delimiter="__")

    home: Path = Field(default=Path(".stockml"), description="Where embedded state lives.")
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
    cutoff: str | None = Field(default=None, description="Last day of history to use (default: today).")
    horizon: int = Field(default=13, ge=1, le=104, description="Forecast horizon in weeks.")
    season_length: int = Field(default=52, ge=1, description="Seasonal period in weeks.")
    backtest_windows: int = Field(default=3, ge=1, description="Rolling-origin windows in backtests.")
    methods: list[str] | None = Field(default=None, description="Zoo methods to run (default: all).")
    n_jobs: int = Field(default=-1, description="Processes for forecasting (-1: all cores).")
    abc_cutoffs: tuple[float, float] = (0.80, 0.95)
    xyz_cutoffs: tuple[float, float] = (0.5, 1.0)
    adi_cutoff: float = 1.32
    cv2_cutoff: float = 0.49
    anomaly_contamination: float = Field(default=0.05, gt=0, lt=0.5)
    quarantine_retention_days: int = 90
    run_retention_days: int = Field(default=30, ge=0, description="Run folders older than this are pruned daily.")
    retrain_mase_threshold: float = Field(
        default=1.5, gt=0, description="Monitoring triggers stock_training when live MASE exceeds this."
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI (default: sqlite:///<home>/mlflow.db)."
    )
    mlflow_experiment: str = Field(default="stockml-router", description="MLflow experiment for router runs.")
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
    promotion_tolerance: float = Field(
        default=0.0, ge=0, description="How much worse (relative MASE) a candidate may be and still be promoted."
    )
    serving: ServingSettings = Field(
        default_factory=ServingSettings, description="The HTTP service (STOCKML_SERVING__*)."
    )
    bandit: BanditSettings = Field(
        default_factory=BanditSettings, description="Champion/challenger bandit (STOCKML_BANDIT__*)."
    )
    batch: BatchSettings = Field(default_factory=BatchSettings, description="Batch jobs (STOCKML_BATCH__*).")
    auth: AuthSettings = Field(
        default_factory=AuthSettings, description="API keys, OIDC, rate limits (STOCKML_AUTH__*)."
    )

    @cached_property
    def default_source_db(self) -> Path:
        return self.home / "source.db"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> Path:
        return (self.home / "mlartifacts").resolve()

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{(self.home / 'optuna.db').resolve()}"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def ground_truth_path(self) -> Path:
        return self.home / "demo_ground_truth.json"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
