"""What every ``stockml`` command shares: one-line errors instead of tracebacks, and the CLI's logging.

Split out of :mod:`stockml.cli` so that the command modules (:mod:`stockml.cli_registry`,
:mod:`stockml.cli_orders`, :mod:`stockml.cli_dashboards`, :mod:`stockml.cli_monitor`) use the same
guard and logging without importing the app that registers them.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import TYPE_CHECKING, NoReturn

import typer

from stockml.cli_report import console
from stockml.settings import Settings, get_settings

if TYPE_CHECKING:
    from stockml.run import Run

# Output rows are keyed by (pipeline, data cut-off week), not by the run id.
RUN_ID_HELP = "Run id (names the run folder; a run over the same data cut-off replaces the table rows)."


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with code 2 (bad input: the message says how to fix it)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code=2)


def guard(fn):
    """Turn expected errors into one-line messages; keep tracebacks for STOCKML_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except Exception as exc:
            if debug_on():
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
                fail(str(exc))
            fail(f"{type(exc).__name__}: {exc} (run with STOCKML_DEBUG=1 for the traceback)")

    return wrapper


def debug_on() -> bool:
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


def configure_logging(s: Settings) -> None:
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


def registry_settings() -> Settings:
    """Settings, quiet logging and MLflow pointed at the configured registry."""
    from stockml.steps.registry import configure_mlflow

    s = get_settings()
    configure_logging(s)
    configure_mlflow(s)
    return s


def new_run(source: str | None, run_id: str | None, **overrides: object) -> Run:
    """The settings of this command (its options override the environment) and a run for them."""
    from stockml.run import Run, new_run_id

    s = get_settings(source_conn_id=source, **overrides)
    return Run(s, run_id or new_run_id())
