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


class Settings(BaseSettings):
    """Platform configuration, read from ``STOCKML_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="STOCKML_", extra="ignore")

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

    @cached_property
    def default_source_db(self) -> Path:
        return self.home / "source.db"

    @property
    def runs_dir(self) -> Path:
        return self.home / "runs"

    @property
    def ground_truth_path(self) -> Path:
        return self.home / "demo_ground_truth.json"


def get_settings(**overrides: object) -> Settings:
    """Build settings from the environment, with explicit overrides (CLI flags) on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
