"""Writing a benchmark's JSON report: whole or not at all (a crash never leaves half a file in bench/results/);
and the growth exponent the scale benchmarks report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, default=str))
    tmp.replace(path)


def loglog_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """The slope of log(seconds) on log(size), rounded to 2 decimals (1: linear growth)."""
    return round(float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0]), 2)
