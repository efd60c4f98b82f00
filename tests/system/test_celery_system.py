"""System test of the distributed set-up: Airflow 3 with the CeleryExecutor, PostgreSQL and Redis,
started and stopped by the scripts users run, ``infra/airflow/start-distributed.sh`` and
``infra/airflow/stop-distributed.sh``.

The module runs ``start-distributed.sh`` (which creates the metadata database, migrates it,
generates the secrets into ``$AIRFLOW_HOME/secrets.env`` and starts api-server, scheduler,
dag-processor, triggerer, two Celery workers, one on the default and maintenance queues and one on the
training queue, and Flower, as separate processes with PID and log files in ``$AIRFLOW_HOME/run/``)
with its documented overrides pointing everything at throw-away places: a temporary ``AIRFLOW_HOME``,
a new PostgreSQL database on the test server, a ``redis-server`` of its own on a free port as the
broker, free ports for the API, the log servers and Flower, and queue names of its own. Then it drives
the stack only through the REST API v2 (JWT from ``POST /auth/token`` with the admin password the
script generated): unpause ``stock_ingest``, trigger a run, wait for it. It checks that the task went
through Celery (Celery task id on the task instance, its result SUCCESS in the result backend, the
default worker's log) and that the outputs landed in the source database. Then ``stock_training``
runs until its first heavy step, ``tune_zoo``, has succeeded: that step must have been queued on the
training queue and executed by the training worker (its Celery task id in that worker's log only),
the light steps before it by the other worker; the rest of the run is marked failed. Flower must
refuse a request without its login (401) and, with it, list both workers and the queues each consumes.
At the end ``stop-distributed.sh`` stops the components (the test then checks none is left) and the
database is dropped.

Needs PostgreSQL at 127.0.0.1:5432 (STOCKML_TEST_PG_URI), ``redis-server`` on PATH, the Celery
provider and Flower; it fails with the reason when one is missing. About two minutes on 2 cores.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from airflow_runs import FAST_TRAINING
from redis_server import ThrowawayRedis
from services import PG_URI, postgres_unreachable

from stockml.connections import sqlite_conn_json
from training.data.demo import generate_catalogue
from training.data.store import read_output, write_source_tables

pytestmark = [pytest.mark.slow, pytest.mark.celery]

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "infra" / "airflow" / "start-distributed.sh"
STOP_SCRIPT = REPO / "infra" / "airflow" / "stop-distributed.sh"
RUN_TIMEOUT_S = float(os.environ.get("STOCKML_TEST_CELERY_TIMEOUT_S", "300"))
START_TIMEOUT_S = 240.0
WORKER, TRAINING_WORKER = "celery-worker", "celery-worker-training"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer", WORKER, TRAINING_WORKER, "flower")
# stock_training's steps up to its first heavy one (the test stops the run there), and their queues.
TRAINING_STEPS = {"prepare": "default", "classify": "default", "tune_zoo": "training"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"<{path}: {exc}>"
    return f"--- {path.name} (last {lines} lines) ---\n" + "\n".join(line[:400] for line in text[-lines:])


def _pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds ``marker`` (our unique AIRFLOW_HOME): what is still running of the stack."""
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes (its parent, the script's shell, has exited)
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def _script(path: Path, env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(path), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


class Stack:
    """The components start-distributed.sh started (its PID and log files), and a REST client."""

    def __init__(self, env: dict[str, str], db_url: str):
        self.env, self.db_url = env, db_url
        self.queues = {  # role -> this stack's queue name
            "default": env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"],
            "training": env["STOCKML_AIRFLOW__TRAINING_QUEUE"],
            "maintenance": env["STOCKML_AIRFLOW__MAINTENANCE_QUEUE"],
        }
        self.queue = self.queues["default"]
        self.home = Path(env["AIRFLOW_HOME"])
        self.run_dir = self.home / "run"
        self.base_url = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
        self.flower_url = f"http://127.0.0.1:{env['AIRFLOW__CELERY__FLOWER_PORT']}"
        self.logs = {name: self.run_dir / f"{name}.log" for name in COMPONENTS}
        self._token: str | None = None
        self.http = httpx.Client(base_url=self.base_url, timeout=30)

    def pids(self) -> dict[str, int]:
        """Component -> PID, from the PID files the script wrote (and stop-distributed.sh removes)."""
        return {f.stem: int(f.read_text().strip()) for f in sorted(self.run_dir.glob("*.pid"))}

    def secret(self, name: str) -> str:
        """A value start-distributed.sh generated into secrets.env."""
        for line in (self.home / "secrets.env").read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1].strip()
        raise AssertionError(f"secrets.env has no {name}")

    def password(self) -> str:
        """The Airflow admin password."""
        return self.secret("STOCKML_AIRFLOW_ADMIN_PASSWORD")

    def log(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def diagnostics(self, names: tuple[str, ...] = COMPONENTS, lines: int = 40) -> str:
        pids = self.pids()
        status = ", ".join(f"{n}: {'running' if _alive(p) else 'exited'}" for n, p in pids.items())
        return f"\n[{status}]\n" + "\n".join(_tail(self.logs[n], lines) for n in names if n in self.logs)

    def check_alive(self) -> None:
        dead = [n for n, p in self.pids().items() if not _alive(p)]
        if dead:
            pytest.fail(f"Airflow component(s) exited: {dead}" + self.diagnostics(tuple(dead), 80))

    def token(self) -> str:
        if self._token is None:
            r = self.http.post("/auth/token", json={"username": "admin", "password": self.password()})
            assert r.status_code == 201, f"POST /auth/token: {r.status_code} {r.text[:500]}"
            self._token = r.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token()}"}
        return self.http.request(method, f"/api/v2{path}", headers=headers, **kwargs)

    def stop(self) -> list[int]:
        """stop-distributed.sh, then SIGKILL to whatever of the stack is still running; returns those PIDs."""
        self.http.close()
        stopped = _script(STOP_SCRIPT, self.env, "--timeout", "45", timeout=180)
        leftovers = [p for p in _pids_with_env(f"AIRFLOW_HOME={self.env['AIRFLOW_HOME']}\0") if _alive(p)]
        for pid in leftovers:  # never leave a stack behind on a shared machine, even when the script failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        return leftovers


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
    try:
        import airflow.providers.celery  # noqa: F401
    except ImportError as exc:  # a failure, not a skip: the lock installs the provider
        pytest.fail(f"apache-airflow-providers-celery is not installed: {exc}")
    reason = postgres_unreachable()
    if reason:
        pytest.fail(reason)

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

    broker = ThrowawayRedis(root)
    queue = f"stockml_test_{uuid.uuid4().hex[:8]}"  # and _training, _maintenance
    # Only the overrides celery.env documents; the rest are the script's defaults. The caller's own
    # AIRFLOW_*/STOCKML_* variables are dropped, so the stack is built from these alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "STOCKML_"))}
    env.update(
        {
            "STOCKML_VENV": str(Path(sys.executable).parent.parent),  # the venv running this test
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,  # created by the script
            "AIRFLOW__CELERY__BROKER_URL": broker.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "STOCKML_AIRFLOW__TRAINING_QUEUE": f"{queue}_training",
            "STOCKML_AIRFLOW__MAINTENANCE_QUEUE": f"{queue}_maintenance",
            "AIRFLOW__CELERY__FLOWER_PORT": str(_free_port()),
            "AIRFLOW__API__PORT": str(_free_port()),
            # Free ports instead of 8793/8794, which another Airflow on the machine may hold.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "STOCKML_HOME": str(home),
            "AIRFLOW_CONN_STOCKML_SOURCE": sqlite_conn_json(source_db),
            "STOCKML_CUTOFF": "2026-11-22",  # the demo history's last day: clock-independent
            **FAST_TRAINING,  # a few fast methods and trials: stock_training's first steps in seconds
            "STOCKML_ORDERS": "false",
        }
    )
    stack = Stack(env, db_url)
    started = None
    try:
        broker.start()
        started = _script(START_SCRIPT, env)
        assert started.returncode == 0, (
            f"start-distributed.sh exited {started.returncode}:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
            + stack.diagnostics()
        )
        assert set(stack.pids()) == set(COMPONENTS), stack.pids()
        assert f"created database {db_name}" in started.stdout, started.stdout[-2000:]

        def healthy():
            health = stack.http.get("/api/v2/monitor/health").json()
            components = ("metadatabase", "scheduler", "dag_processor", "triggerer")
            ok = all(health.get(c, {}).get("status") == "healthy" for c in components)
            return health if ok else None

        _wait("/api/v2/monitor/health (every component healthy)", stack, START_TIMEOUT_S, healthy)
        for worker in (WORKER, TRAINING_WORKER):
            _wait(
                f"the Celery worker {worker} to be ready",
                stack,
                START_TIMEOUT_S,
                lambda w=worker: " ready." in stack.log(w),
            )
        yield {"stack": stack, "engine": engine, "source_db": source_db, "start_output": started.stdout}
    finally:
        try:
            leftovers = stack.stop()
        finally:
            engine.dispose()
            broker.kill()
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
            admin.dispose()
        if started is not None and started.returncode == 0:
            assert not leftovers, f"stop-distributed.sh left processes running: {leftovers}"


def _parsed(stack: Stack, dag_id: str) -> dict:
    """Wait until the DAG processor has parsed ``dag_id``; fail at once on an import error."""

    def parsed():
        r = stack.api("GET", f"/dags/{dag_id}")
        if r.status_code == 200:
            return r.json()
        errors = stack.api("GET", "/importErrors").json().get("import_errors")
        if errors:
            pytest.fail(f"DAG import errors: {json.dumps(errors)[:3000]}" + stack.diagnostics(("dag-processor",)))
        return None

    return _wait(f"{dag_id} to be parsed (GET /api/v2/dags/{dag_id})", stack, START_TIMEOUT_S, parsed)


def _celery_id(stack: Stack, dag_id: str, run_id: str, task_id: str) -> str:
    """The Celery task id the executor recorded on a task instance."""
    meta = sa.create_engine(stack.db_url)
    try:
        with meta.connect() as conn:
            query = sa.text(
                "SELECT external_executor_id FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = :t"
            )
            celery_id = conn.execute(query, {"d": dag_id, "r": run_id, "t": task_id}).scalar_one()
    finally:
        meta.dispose()
    assert celery_id, f"{dag_id}.{task_id} in {run_id} has no Celery task id"
    return celery_id


@pytest.fixture(scope="module")
def ingest_run(celery_stack) -> dict:
    """A stock_ingest run triggered through the REST API, waited for: its id, state, task instances, log."""
    stack: Stack = celery_stack["stack"]
    _parsed(stack, "stock_ingest")

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
    print(f"\nstock_ingest run {run_id}: {state} {time.monotonic() - t0:.1f}s after triggering")
    return {"run_id": run_id, "state": state, "tis": tis, "logs": logs}


def test_stock_ingest_runs_on_the_celery_worker(celery_stack, ingest_run):
    stack: Stack = celery_stack["stack"]
    run_id, state, tis, logs = (ingest_run[k] for k in ("run_id", "state", "tis", "logs"))
    assert state == "success", (
        f"dag run {run_id}: {state}; task instances {[(t['task_id'], t['state']) for t in tis]}\n"
        f"task log: {logs.text[-4000:]}" + stack.diagnostics((WORKER, "scheduler"))
    )

    # The task ran through Celery: queued on this run's default queue, executed by a worker process ...
    (ti,) = tis
    assert ti["task_id"] == "ingest" and ti["state"] == "success", ti
    assert ti["queue"] == stack.queue, ti
    assert ti["hostname"] and ti["pid"], ti
    # ... with a Celery task id whose result the worker stored as SUCCESS in the result backend (the
    # Celery task returns just after the task instance reports success through the API, so wait) ...
    celery_id = _celery_id(stack, "stock_ingest", run_id, "ingest")
    meta = sa.create_engine(stack.db_url)
    try:

        def celery_status():
            with meta.connect() as conn:
                query = sa.text("SELECT status FROM celery_taskmeta WHERE task_id = :t")
                return conn.execute(query, {"t": celery_id}).scalar_one_or_none()

        _wait(f"celery_taskmeta[{celery_id}] to be SUCCESS", stack, 90, lambda: celery_status() == "SUCCESS", 1.0)
    finally:
        meta.dispose()
    # ... and the default queue's worker log shows it receiving and finishing that Celery task for this
    # run; the training worker never saw it.
    needles = (
        f"execute_workload[{celery_id}] received",
        f"run_id={run_id}",
        f"execute_workload[{celery_id}] succeeded",
    )
    _wait(f"the worker log to show {needles}", stack, 60, lambda: all(n in stack.log(WORKER) for n in needles), 1.0)
    assert celery_id not in stack.log(TRAINING_WORKER)
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


def test_training_steps_run_on_the_training_worker(celery_stack, ingest_run):
    """stock_training from the ingest's demand up to its first heavy step: tune_zoo on the training queue
    and worker, prepare and classify on the default ones; then the run is stopped (marked failed)."""
    stack: Stack = celery_stack["stack"]
    assert ingest_run["state"] == "success", "stock_ingest failed (see test_stock_ingest_runs_on_the_celery_worker)"
    _parsed(stack, "stock_training")
    # The queues are in the parsed DAG, as the DAG processor read them from the settings.
    tasks = {t["task_id"]: t for t in stack.api("GET", "/dags/stock_training/tasks").json()["tasks"]}
    for task_id, role in {
        **TRAINING_STEPS,
        "backtest": "training",
        "forecast": "training",
        "promote": "default",
    }.items():
        assert tasks[task_id]["queue"] == stack.queues[role], (task_id, tasks[task_id]["queue"])

    r = stack.api("PATCH", "/dags/stock_training", json={"is_paused": False})
    assert r.status_code == 200, r.text[:1000]
    ours = f"celery_training_{uuid.uuid4().hex[:8]}"
    r = stack.api("POST", "/dags/stock_training/dagRuns", json={"dag_run_id": ours, "logical_date": None, "conf": {}})
    assert r.status_code == 200, r.text[:1000]

    # The ingest's Asset event (or the weekly schedule) may have queued a run before ours, and runs go one
    # at a time: whichever run gets tune_zoo done first is the one checked.
    def runs() -> list[dict]:
        return stack.api("GET", "/dags/stock_training/dagRuns").json()["dag_runs"]

    def tune_zoo_done():
        for run in runs():
            tis = stack.api("GET", f"/dags/stock_training/dagRuns/{run['dag_run_id']}/taskInstances").json()
            by_id = {ti["task_id"]: ti for ti in tis["task_instances"]}
            states = {k: by_id.get(k, {}).get("state") for k in TRAINING_STEPS}
            failed = [k for k, s in states.items() if s in ("failed", "upstream_failed")]
            if failed:
                log_path = f"/dags/stock_training/dagRuns/{run['dag_run_id']}/taskInstances/{failed[0]}/logs/1"
                log_text = stack.api("GET", log_path).text[-3000:]
                pytest.fail(f"stock_training {run['dag_run_id']}: {states}\n{log_text}" + stack.diagnostics())
            if states["tune_zoo"] == "success":
                return run["dag_run_id"], by_id
        return None

    t0 = time.monotonic()
    run_id, tis = _wait("stock_training's tune_zoo to succeed", stack, RUN_TIMEOUT_S, tune_zoo_done, interval=3.0)
    print(f"\nstock_training {run_id}: tune_zoo done {time.monotonic() - t0:.1f}s after triggering")
    try:
        worker_of = {"default": WORKER, "training": TRAINING_WORKER}
        for task_id, role in TRAINING_STEPS.items():
            ti = tis[task_id]
            assert ti["state"] == "success" and ti["queue"] == stack.queues[role], ti
            celery_id = _celery_id(stack, "stock_training", run_id, task_id)
            mine, other = worker_of[role], worker_of["training" if role == "default" else "default"]
            done = f"execute_workload[{celery_id}] succeeded"
            _wait(f"{mine}'s log to show {done}", stack, 60, lambda w=mine, d=done: d in stack.log(w), 1.0)
            assert f"execute_workload[{celery_id}] received" in stack.log(mine), (task_id, mine)
            assert celery_id not in stack.log(other), (task_id, f"{other} ran it")
    finally:  # the rest of the training is not this test's business: stop it
        stack.api("PATCH", "/dags/stock_training", json={"is_paused": True})
        for run in runs():
            if run["state"] not in ("success", "failed"):
                stack.api("PATCH", f"/dags/stock_training/dagRuns/{run['dag_run_id']}", json={"state": "failed"})


def test_flower_needs_its_login_and_lists_the_workers_per_queue(celery_stack):
    stack: Stack = celery_stack["stack"]
    user, password = stack.secret("AIRFLOW__CELERY__FLOWER_BASIC_AUTH").split(":", 1)
    assert user == "admin" and len(password) >= 12
    assert f"Flower (Celery monitor): {stack.flower_url}" in celery_stack["start_output"]
    with httpx.Client(base_url=stack.flower_url, timeout=30) as flower:
        _wait("Flower to answer", stack, START_TIMEOUT_S, lambda: flower.get("/healthcheck").status_code == 200)
        assert flower.get("/api/workers").status_code == 401
        assert flower.get("/api/workers", auth=(user, "wrong")).status_code == 401
        assert flower.get("/", auth=(user, password)).status_code == 200

        # Celery hostnames are <name>@<machine> (start-distributed.sh's --celery-hostname NAME@%h).
        expected = {
            WORKER: {stack.queues["default"], stack.queues["maintenance"]},
            TRAINING_WORKER: {stack.queues["training"]},
        }

        def workers():  # refresh=1: Flower asks the workers now (celery inspect); a busy one may answer late
            r = flower.get("/api/workers", params={"refresh": 1}, auth=(user, password))
            assert r.status_code == 200, r.text[:1000]
            found = {
                name.split("@")[0]: {q["name"] for q in info.get("active_queues") or []}
                for name, info in r.json().items()
            }
            return found if found == expected else None

        _wait(f"Flower's /api/workers to list {expected}", stack, 120, workers, 3.0)
