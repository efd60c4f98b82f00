"""``make mlflow-up`` / ``make mlflow-down``, the targets ``make run`` starts its MLflow server with.

The repository's Makefile runs in a temporary folder (its ``.stockml`` lands there) on a free port,
with this interpreter's virtual environment (``VENV=``; ``-o`` the install stamp, so nothing is
installed): the server answers ``/health`` and serves its UI, an artifact logged through it lands in
the folder the server serves (``.stockml/mlflow-server-artifacts``), a second ``mlflow-up`` keeps the
running server, and ``mlflow-down`` stops it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from bench.serving_stack import REPO, free_port

pytestmark = pytest.mark.slow


def _make(cwd: Path, target: str, port: int) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parents[1]
    stamp = sys.executable  # an existing file standing for the install stamp, marked old-but-fine with -o
    cmd = ["make", "-f", str(REPO / "Makefile"), f"VENV={venv}", f"STAMP={stamp}", "-o", stamp, target]
    return subprocess.run(
        [*cmd, f"MLFLOW_PORT={port}"], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_make_mlflow_up_serves_tracking_ui_and_artifacts_and_down_stops_it(tmp_path):
    if shutil.which("make") is None or shutil.which("curl") is None:
        pytest.fail("make and curl are needed on PATH (the Makefile uses both)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    previous = mlflow.get_tracking_uri()
    try:
        up = _make(tmp_path, "mlflow-up", port)
        assert up.returncode == 0, up.stdout + up.stderr + (tmp_path / ".stockml/mlflow-server.log").read_text()
        assert f"MLflow UI: {url}" in up.stdout
        assert httpx.get(f"{url}/health", timeout=10).text.strip() == "OK"
        ui = httpx.get(f"{url}/", timeout=10)
        assert ui.status_code == 200 and "<html" in ui.text.lower()

        mlflow.set_tracking_uri(url)
        # an experiment of this server: the fluent API may still hold the active experiment id of an
        # earlier test's store (order-dependent "No Experiment with id=1 exists")
        mlflow.set_experiment("make-mlflow-up")
        note = tmp_path / "note.txt"
        note.write_text("through the server")
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(note))
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        stored = list((tmp_path / ".stockml" / "mlflow-server-artifacts").rglob("note.txt"))
        assert [p.read_text() for p in stored] == ["through the server"]

        again = _make(tmp_path, "mlflow-up", port)
        assert again.returncode == 0 and "(already up)" in again.stdout, again.stdout + again.stderr
    finally:
        mlflow.set_tracking_uri(previous)
        down = _make(tmp_path, "mlflow-down", port)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / ".stockml" / "mlflow.pid").exists()
    deadline = time.time() + 30  # SIGTERM to the server's process group: it closes its socket on the way out
    while True:
        try:
            httpx.get(f"{url}/health", timeout=2)
        except httpx.TransportError:
            break
        if time.time() > deadline:
            pytest.fail(f"mlflow server still answers at {url} after make mlflow-down")
        time.sleep(0.5)
