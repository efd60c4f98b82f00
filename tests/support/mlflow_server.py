"""A real ``mlflow server`` for tests: PostgreSQL backend store, artifacts served by the server.

The backend is a throw-away database in the machine's PostgreSQL (``CREATE DATABASE mlflow_<hex>``,
dropped after), the artifacts a folder behind ``--serve-artifacts --artifacts-destination``, so
clients (the CLI, the service) see ``mlflow-artifacts:/`` URIs and never touch the folder: the
production layout. :class:`MlflowServer` can be killed (SIGKILL) and started again on the same port
with the same stores, which the fault tests use.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from services import PG_URI, postgres_unreachable

from bench.serving_stack import free_port

START_TIMEOUT_S = 180


@contextlib.contextmanager
def throwaway_pg_database(prefix: str = "mlflow") -> Iterator[str]:
    """A fresh database in the test PostgreSQL, as a SQLAlchemy URL (psycopg 3); dropped after.

    Fails (not skips) when PostgreSQL does not answer: this path has no stand-in.
    """
    import psycopg

    reason = postgres_unreachable()
    if reason:
        raise RuntimeError(f"a Postgres-backed mlflow server needs PostgreSQL: {reason}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URI, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_URI.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_URI, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:``port`` (a free one by default) over the given stores."""

    def __init__(self, backend_uri: str, artifacts: Path, log_path: Path, port: int | None = None) -> None:
        self.backend_uri = backend_uri
        self.artifacts = artifacts
        self.log_path = log_path
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        """Start the server and wait until ``/health`` answers (raises with the log's tail if it does not)."""
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", self.backend_uri,
                "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ},
        )  # fmt: skip
        log.close()
        deadline = time.time() + START_TIMEOUT_S
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.proc.returncode}): {self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.5)
        self.kill()
        raise RuntimeError(f"mlflow server not healthy after {START_TIMEOUT_S} s: {self.log_tail()}")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=3).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL the server and its gunicorn/uvicorn workers (its own process group): a crash, not a shutdown."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """Terminate gracefully (SIGTERM to the group), SIGKILL if it lingers past 10 s (uvicorn waits for
        clients' keep-alive connections)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text()[-n:] if self.log_path.exists() else ""


@contextlib.contextmanager
def postgres_mlflow_server(tmp: Path) -> Iterator[MlflowServer]:
    """A started :class:`MlflowServer` on a throw-away Postgres database, artifacts under ``tmp``; stopped
    and the database dropped after."""
    with throwaway_pg_database() as backend:
        server = MlflowServer(backend, tmp / "served-artifacts", tmp / "mlflow-server.log")
        try:
            yield server.start()
        finally:
            server.stop()
