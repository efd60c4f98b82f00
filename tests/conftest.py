"""Hermetic test environment: Airflow and stockml state live in a temporary folder."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="stockml-tests-"))
os.environ.setdefault("AIRFLOW_HOME", str(_HOME / "airflow"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("STOCKML_HOME", str(_HOME / "stockml"))
