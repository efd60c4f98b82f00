"""How large a level shift the degradation rule catches on the demo (the rule's sensitivity).

``python -m bench.degradation_shift`` builds the demo catalogue the DAG test uses (30 SKUs, 110
weeks, seed 5), trains with the test's fast settings on the data up to 2026-09-27 (8-week
horizon), then for each factor multiplies every sale after that day by it, ingests again and
runs the monitoring checks (:func:`stockml.steps.monitoring.monitoring_step`, not written). It
prints, per factor, the champion's weekly MASE of the last two observed weeks against the limit
(``degradation_ratio`` x its backtest MASE) and the verdict. Writes
``bench/results/degradation_shift.json``. Takes about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

from bench.report import write_report
from stockml.connections import sqlite_conn_json
from training.data.demo import generate_catalogue
from training.data.store import write_source_tables

FACTORS = (1.0, 1.1, 1.3, 1.6, 2.0)
FAST = {
    "STOCKML_METHODS": '["Naive2", "SES", "Theta", "TSB", "CrostonSBA"]', "STOCKML_N_JOBS": "1",
    "STOCKML_AUTOML_TRIALS": "2", "STOCKML_ZOO_TRIALS": "1", "STOCKML_BACKTEST_WINDOWS": "2", "STOCKML_HORIZON": "8",
}  # fmt: skip
ORIGIN = "2026-09-27"


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "stockml.cli", *args], check=True, capture_output=True)


def run(factors=FACTORS) -> dict:
    home = Path(tempfile.mkdtemp(prefix="stockml-bench-"))
    db = home / "source.db"
    os.environ.update({"STOCKML_HOME": str(home), "AIRFLOW_CONN_STOCKML_SOURCE": sqlite_conn_json(db), **FAST})
    from stockml.settings import get_settings
    from stockml.steps.monitoring import monitoring_step

    cat = generate_catalogue(30, 110, seed=5)
    engine = sa.create_engine(f"sqlite:///{db}")
    write_source_tables(engine, cat.products, cat.movements)
    _cli("run", "--cutoff", ORIGIN, "--run-id", "train")
    pristine = home / "source.pristine.db"
    shutil.copy(db, pristine)
    rows = []
    for i, factor in enumerate(factors):
        shutil.copy(pristine, db)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE stock_movements SET qty_sold = ROUND(qty_sold * :f) WHERE date > :d"),
                         {"f": factor, "d": ORIGIN})  # fmt: skip
        _cli("validate", "--run-id", f"shift{i}")
        s = get_settings()
        d = monitoring_step(s, write=False)["checks"]["degradation"]
        rows.append({"factor": factor, "weekly_mase": [w["mase"] for w in d["recent"]], "limit": d["limit"],
                     "backtest_mase": d["backtest_mase"], "degraded": d["flagged"]})  # fmt: skip
        print(f"x{factor}: weekly MASE {[round(w['mase'], 3) for w in d['recent']]} vs limit {d['limit']:.3f} -> "
              f"{'degraded' if d['flagged'] else 'healthy'}")  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)
    return {
        "command": "python -m bench.degradation_shift",
        "catalogue": {"skus": 30, "weeks": 110, "seed": 5, "origin": ORIGIN, "horizon": 8},
        "rule": {"ratio": s.degradation_ratio, "weeks": s.degradation_weeks},
        "machine": f"{platform.machine()} {platform.python_version()}",
        "cases": rows,
    }


def main() -> None:  # pragma: no cover
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "degradation_shift.json")
    args = parser.parse_args()
    write_report(args.out, run())


if __name__ == "__main__":  # pragma: no cover
    main()
