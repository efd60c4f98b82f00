"""A pipeline run: its settings, its id, its folder (a :class:`~stockml.layout.RunLayout`), its source.

Each step reads what the previous one left in the run folder (``<home>/runs/<run_id>/``) and
writes its outputs back to the source database idempotently, keyed by (``pipeline``, the data
cut-off week of the demand the run holds) rather than by the run id, so any step can be re-run
on its own, and a new run over the same data (same logical date again, an Asset-triggered
run) replaces the rows instead of adding a second set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from stockml.connections import ensure_default_source, get_hook
from stockml.layout import RunLayout
from stockml.settings import Settings
from training.data.store import OutputKey, write_output

log = logging.getLogger("stockml.pipeline")
Progress = Callable[[str, int, int], None]


def noop_progress(step: str, done: int, total: int) -> None:
    return None


# A stage meter: ``with stages("backtest"): ...`` around each step of a run, so that a caller can time
# and measure the steps (bench.scale) without the pipeline knowing how; the default measures nothing.
Stages = Callable[[str], AbstractContextManager[object]]


def no_stages(name: str) -> AbstractContextManager[object]:
    return nullcontext()


def new_run_id() -> str:
    return "manual__" + pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S")


def safe_run_id(run_id: str) -> str:
    """A run id as a folder name (Airflow run ids carry ':' and '+')."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


CLI_PIPELINE = "cli"


@dataclass
class Run:
    """``pipeline`` names what writes the outputs (a DAG id, or ``cli``): half of the output key."""

    settings: Settings
    run_id: str = field(default_factory=new_run_id)
    pipeline: str = CLI_PIPELINE

    def __post_init__(self) -> None:
        ensure_default_source(self.settings.source_conn_id, self.settings.default_source_db)

    @property
    def layout(self) -> RunLayout:
        """Every artifact path of this run (the folder is created on first use)."""
        layout = self.settings.layout.run(safe_run_id(self.run_id))
        layout.root.mkdir(parents=True, exist_ok=True)
        return layout

    @property
    def dir(self) -> Path:
        return self.layout.root

    def hook(self) -> Any:
        return get_hook(self.settings.source_conn_id)

    def engine(self) -> Any:
        return self.hook().get_sqlalchemy_engine()

    def output_key(self) -> OutputKey:
        """(pipeline, last complete week of the run's weekly demand), from the run's ingest report.

        The report travels with the demand (an adopted snapshot brings its own), so a training
        run is keyed by the data it consumed, which an Asset-triggered run (no logical date)
        knows as well as a scheduled one.
        """
        report = self.load_json(self.layout.ingest_report)
        return OutputKey.of(self.pipeline, report["last_week"])

    def write(self, table: str, df: pd.DataFrame) -> int:
        """Replace the rows of this run's output key in ``table`` with ``df``."""
        return write_output(self.hook(), table, df, self.output_key(), self.run_id, self.settings.source_schema)

    def save_json(self, path: Path, payload: dict) -> Path:
        return self.layout.write_json(path, payload)

    def load_json(self, path: Path) -> dict:
        return self.layout.read_json(path)
