"""AutoML with Optuna: hyper-parameters of the forecasting router and of the zoo members that have them.

Studies live in a persistent Optuna storage (SQLite by default on the platform, Postgres works
too), so a re-run with the same study name continues where the last one stopped. Every study
starts from the current defaults as its first trial, so a tuned result is never worse than the
defaults on the same data.
"""

from training.automl.tune_router import TuneResult, best_router, tune_router
from training.automl.tune_zoo import TUNABLE, default_params, tune_zoo

__all__ = ["TUNABLE", "TuneResult", "best_router", "default_params", "tune_router", "tune_zoo"]
