"""System test of the distributed set-up: Airflow 3 with the CeleryExecutor, PostgreSQL and Redis.

The module starts, as separate processes, ``airflow api-server``, ``airflow scheduler``,
``airflow dag-processor`` and ``airflow celery worker`` (as infra/airflow/start-distributed.sh
does) against a throw-away PostgreSQL metadata database and a Redis broker DB, then drives them
only through the REST API v2 (JWT from ``POST /auth/token``): unpause ``stock_ingest``, trigger a
run, wait for it. It checks that the task went through Celery (Celery task id on the task
instance, its result SUCCESS in the result backend, the worker's log) and that the outputs landed
in the source database. Everything is torn down and the database dropped at the end.

Needs PostgreSQL at 127.0.0.1:5432 (STOCKML_TEST_PG_URI) and Redis (STOCKML_TEST_REDIS_URL, DB 7 by
default, flushed before and after); skipped with the reason when either is unreachable or the
Celery provider is not installed. About a minute on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from services import PG_URI, postgres_unreachable

from stockml.connections import sqlite_conn_json
from training.data.demo import generate_catalogue
from training.data.store import read_output, write_source_tables

pytestmark = [pytest.mark.slow, pytest.mark.celery]

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("STOCKML_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
RUN_TIMEOUT_S = float(os.environ.get("STOCKML_TEST_CELERY_TIMEOUT_S", "300"))
START_TIMEOUT_S = 240.0
COMPONENTS = ("api-server", "scheduler", "dag-processor", "celery-worker")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _redis_unreachable(url: str) -> str | None:
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except Exception as exc:
        return f"Redis not reachable at {url}: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def _flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_connect_timeout=3).flushdb()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<{path}: {exc}>"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(line[:400] for line in text[-lines:])


def _pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (our unique AIRFLOW_HOME): leftovers to kill."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


class Stack:
    """The running Airflow components, their logs, and a REST client."""

    def __init__(self, root: Path, env: dict[str, str], db_url: str, base_url: str, password: str, queue: str):
        self.root, self.env, self.db_url, self.base_url, self.queue = root, env, db_url, base_url, queue
        self.password = password
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._token: str | None = None
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def start(self, name: str, *args: str) -> None:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.logs[name] = log
        with log.open("wb") as fh:  # the child keeps its own handle
            # `python -m airflow` rather than .venv/bin/airflow: same program, and the command line does
            # not match `pkill -f .venv/bin/airflow` clean-ups of other stacks running on the machine.
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args],
                env=self.env,
                cwd=self.root,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: torn down as a whole
            )

    def diagnostics(self, names: tuple[str, ...] = COMPONENTS, lines: int = 40) -> str:
        status = ", ".join(
            f"{n}: {'running' if p.poll() is None else f'exited {p.returncode}'}" for n, p in self.procs.items()
        )
        return f"\n[{status}]\n" + "\n".join(_tail(self.logs[n], lines) for n in names if n in self.logs)

    def check_alive(self) -> None:
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        if dead:
            pytest.fail(f"Airflow component(s) exited: {dead}" + self.diagnostics(tuple(dead), 80))

    def token(self) -> str:
        if self._token is None:
            r = self.http.post("/auth/token", json={"username": "admin", "password": self.password})
            assert r.status_code == 201, f"POST /auth/token: {r.status_code} {r.text[:500]}"
            self._token = r.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return self.http.request(method, f"/api/v2{path}", headers=headers, **kwargs)

    def stop(self) -> None:
        self.http.close()
        # Worker first (stops taking tasks), then the rest: SIGTERM to each process group.
        for name in ("celery-worker", "dag-processor", "scheduler", "api-server"):
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 45
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            # The group may outlive its leader (task runners, log servers).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        for pid in _pids_with_env(f"AIRFLOW_HOME={self.env['AIRFLOW_HOME']}\0"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait(what: str, stack: Stack, timeout: float, probe, interval: float = 2.0):
    """Call ``probe`` until it returns something truthy; fail with the components' logs on timeout."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            result = probe()
        except (httpx.HTTPError, ValueError) as exc:  # the API server is still starting
            result, last = None, repr(exc)
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last})" + stack.diagnostics())


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory):
    pytest.importorskip("airflow.providers.celery", reason="apache-airflow-providers-celery is not installed")
    for reason in (postgres_unreachable(), _redis_unreachable(REDIS_URL)):
        if reason:
            pytest.skip(reason)

    root = tmp_path_factory.mktemp("celery")
    db_name = f"stockml_airflow_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URI.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    db_url = sa.make_url(PG_URI).set(drivername="postgresql+psycopg", database=db_name).render_as_string(False)

    # The stockml source: a small SQLite demo catalogue (with the dirty rows ingest must quarantine).
    home = root / "home"
    home.mkdir()
    source_db = home / "source.db"
    engine = sa.create_engine(f"sqlite:///{source_db}")
    cat = generate_catalogue(20, 80, seed=11, dirty_rows=True)
    write_source_tables(engine, cat.products, cat.movements)

    api_port = _free_port()
    password = secrets.token_urlsafe(12)
    airflow_home = root / "airflow"
    airflow_home.mkdir()
    passwords_file = airflow_home / "passwords.json"
    passwords_file.write_text(json.dumps({"admin": password}))
    queue = f"stockml_test_{uuid.uuid4().hex[:8]}"  # isolates this run from other workers on the broker
    base_url = f"http://127.0.0.1:{api_port}"
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STOCKML_"))}
    env.update(
        {
            "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",  # components spawn `airflow` via PATH
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
            # Free ports instead of 8793/8794, which another Airflow on the machine may hold.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "STOCKML_HOME": str(home),
            "AIRFLOW_CONN_STOCKML_SOURCE": sqlite_conn_json(source_db),
            "STOCKML_CUTOFF": "2026-11-22",  # the demo history's last day: clock-independent
            "STOCKML_N_JOBS": "1",
        }
    )
    stack = Stack(root, env, db_url, base_url, password, queue)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db_name}"'))
    try:
        _flush_redis(REDIS_URL)
        migrate = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert migrate.returncode == 0, (migrate.stdout + migrate.stderr)[-4000:]
        stack.start("api-server", "api-server")
        stack.start("scheduler", "scheduler")
        stack.start("dag-processor", "dag-processor")
        stack.start("celery-worker", "celery", "worker", "--concurrency", "1")

        def healthy():
            health = stack.http.get("/api/v2/monitor/health").json()
            ok = all(
                health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler", "dag_processor")
            )
            return health if ok else None

        _wait(
            "/api/v2/monitor/health (metadatabase, scheduler, dag_processor healthy)", stack, START_TIMEOUT_S, healthy
        )
        _wait(
            "the Celery worker to be ready",
            stack,
            START_TIMEOUT_S,
            lambda: " ready." in stack.logs["celery-worker"].read_text(errors="replace"),
        )
        yield {"stack": stack, "engine": engine, "source_db": source_db}
    finally:
        stack.stop()
        engine.dispose()
        try:
            _flush_redis(REDIS_URL)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            admin.dispose()


def test_stock_ingest_runs_on_the_celery_worker(celery_stack):
    stack: Stack = celery_stack["stack"]

    def parsed():
        r = stack.api("GET", "/dags/stock_ingest")
        if r.status_code == 200:
            return r.json()
        errors = stack.api("GET", "/importErrors").json().get("import_errors")
        if errors:
            pytest.fail(f"DAG import errors: {json.dumps(errors)[:3000]}" + stack.diagnostics(("dag-processor",)))
        return None

    _wait("stock_ingest to be parsed (GET /api/v2/dags/stock_ingest)", stack, START_TIMEOUT_S, parsed)

    r = stack.api("PATCH", "/dags/stock_ingest", json={"is_paused": False})
    assert r.status_code == 200 and r.json()["is_paused"] is False, r.text[:1000]
    run_id = f"celery_system_{uuid.uuid4().hex[:8]}"
    r = stack.api("POST", "/dags/stock_ingest/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": {}})
    assert r.status_code == 200, r.text[:1000]
    assert r.json()["dag_run_id"] == run_id

    # Unpausing also creates the latest scheduled run (catchup=False); max_active_runs=1 runs them one
    # after the other, so ours may wait for it.
    def finished():
        state = stack.api("GET", f"/dags/stock_ingest/dagRuns/{run_id}").json()["state"]
        return state if state in ("success", "failed") else None

    t0 = time.monotonic()
    state = _wait(f"dag run {run_id} to finish", stack, RUN_TIMEOUT_S, finished, interval=3.0)
    tis = stack.api("GET", f"/dags/stock_ingest/dagRuns/{run_id}/taskInstances").json()["task_instances"]
    logs = stack.api("GET", f"/dags/stock_ingest/dagRuns/{run_id}/taskInstances/ingest/logs/1")
    assert state == "success", (
        f"dag run {run_id}: {state}; task instances {[(t['task_id'], t['state']) for t in tis]}\n"
        f"task log: {logs.text[-4000:]}" + stack.diagnostics(("celery-worker", "scheduler"))
    )
    print(f"\nstock_ingest run {run_id} finished in {time.monotonic() - t0:.1f}s after triggering")

    # The task ran through Celery: queued on this run's queue, executed by a worker process ...
    (ti,) = tis
    assert ti["task_id"] == "ingest" and ti["state"] == "success", ti
    assert ti["queue"] == stack.queue, ti
    assert ti["hostname"] and ti["pid"], ti
    # ... with a Celery task id whose result the worker stored as SUCCESS in the result backend (the
    # Celery task returns just after the task instance reports success through the API, so wait) ...
    meta = sa.create_engine(stack.db_url)
    try:
        with meta.connect() as conn:
            celery_id = conn.execute(
                sa.text("SELECT external_executor_id FROM task_instance WHERE dag_id = 'stock_ingest' AND run_id = :r"),
                {"r": run_id},
            ).scalar_one()
        assert celery_id, "the task instance has no Celery task id"

        def celery_status():
            with meta.connect() as conn:
                query = sa.text("SELECT status FROM celery_taskmeta WHERE task_id = :t")
                return conn.execute(query, {"t": celery_id}).scalar_one_or_none()

        _wait(f"celery_taskmeta[{celery_id}] to be SUCCESS", stack, 90, lambda: celery_status() == "SUCCESS", 1.0)
    finally:
        meta.dispose()
    # ... and the worker's own log shows it receiving and finishing that Celery task for this run.
    needles = (
        f"execute_workload[{celery_id}] received",
        f"run_id={run_id}",
        f"execute_workload[{celery_id}] succeeded",
    )
    _wait(
        f"the worker log to show {needles}",
        stack,
        60,
        lambda: all(n in stack.logs["celery-worker"].read_text(errors="replace") for n in needles),
        1.0,
    )
    # The API server serves the task's log.
    assert logs.status_code == 200 and run_id in logs.text, logs.text[:2000]

    # The outputs are in the source database, written by the Airflow run (their run_id column).
    stockml_run = f"stock_ingest__{run_id}"
    xcom = stack.api("GET", f"/dags/stock_ingest/dagRuns/{run_id}/taskInstances/ingest/xcomEntries/return_value")
    assert xcom.status_code == 200, xcom.text[:1000]
    summary = xcom.json()["value"]
    assert summary["run_id"] == stockml_run and summary["skus"] == 20, summary
    quarantined = read_output(celery_stack["engine"], "stock_quarantine", stockml_run)
    assert len(quarantined) == summary["quarantined"] > 0, (len(quarantined), summary)
