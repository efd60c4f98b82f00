"""Spark's HiveServer2-compatible Thrift server, started locally for the Hive tests.

The ``pyspark`` package ships the Spark jars, ``spark-hive-thriftserver`` and the Hive
client jars, so ``$SPARK_HOME/bin/spark-submit --class ...HiveThriftServer2`` with
SPARK_HOME = the installed ``pyspark`` folder is a real HiveServer2 endpoint (NOSASL,
127.0.0.1, a free port) that Airflow's ``HiveServer2Hook`` talks to. Everything it writes
(warehouse, Derby metastore, scratch dirs, logs) stays in one work folder, and ``stop()``
ends the whole process group.

    server = start_hive_server(tmp_dir)      # blocks until a HiveServer2Hook query answers
    os.environ["AIRFLOW_CONN_HIVE"] = server.conn_json()
    ...
    server.stop()
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"
PROBE_CONN_ID = "stockml_hive_probe"
# C1-only JIT and the serial GC: a short-lived test server on 2 cores starts in ~15 s instead of
# ~22-29 s and loads the demo catalogue in ~6 s instead of ~10-12 s (measured here).
DEFAULT_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


class HiveServerError(RuntimeError):
    """The Thrift server did not come up; the message carries the end of its log."""


def java_missing() -> str | None:
    """None when a ``java`` runtime is on PATH, else the reason to skip Hive tests."""
    if shutil.which("java") is None:
        return "Hive tests need a Java runtime (17+) on PATH for Spark's Thrift server: `java` not found"
    return None


def spark_home() -> Path:
    """The installed ``pyspark`` package folder, which is a complete SPARK_HOME."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-submit").exists():
        raise HiveServerError(f"{home} has no bin/spark-submit: is pyspark installed from the full package?")
    return home


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conn_json(port: int, host: str = "127.0.0.1", schema: str = "default") -> str:
    """The Airflow connection (JSON form) of a NOSASL HiveServer2 endpoint."""
    return json.dumps(
        {
            "conn_type": "hiveserver2",
            "host": host,
            "port": port,
            "login": "root",
            "schema": schema,
            "extra": {"auth_mechanism": "NOSASL"},
        }
    )


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _env_var(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@dataclass
class HiveServer:
    """A running Thrift server; ``stop()`` (or the context manager) ends it."""

    port: int
    workdir: Path
    process: subprocess.Popen
    log_path: Path
    start_seconds: float = field(default=0.0)
    _stopped: bool = field(default=False, repr=False)

    def conn_json(self, schema: str = "default") -> str:
        return conn_json(self.port, schema=schema)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def probe(self) -> None:
        """Run ``SELECT 1`` through Airflow's HiveServer2Hook; raises while the server is not ready."""
        from airflow.providers.apache.hive.hooks.hive import HiveServer2Hook

        with _env_var(f"AIRFLOW_CONN_{PROBE_CONN_ID.upper()}", self.conn_json()):
            rows = HiveServer2Hook(hiveserver2_conn_id=PROBE_CONN_ID).get_records("SELECT 1")
        if [tuple(r) for r in rows] != [(1,)]:
            raise HiveServerError(f"SELECT 1 returned {rows!r}")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HiveServerError(
                    f"Spark Thrift server exited with code {self.process.returncode} before answering; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if _listening(self.port):
                try:
                    self.probe()
                    return
                except Exception as exc:  # thrift / pyhive errors while the session layer starts
                    last_error = exc
            time.sleep(1)
        self.stop()
        raise HiveServerError(
            f"Spark Thrift server did not answer on 127.0.0.1:{self.port} within {timeout:.0f} s "
            f"(last error: {last_error!r}); log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 20) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; no JVM is left behind.

        Idempotent: once the group is gone its id may be reused, so later calls signal nothing.
        """
        if self._stopped:
            return
        pgid = self.process.pid  # start_new_session: the leader's pid is the group id
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:  # the whole group already exited
            self.process.poll()
            self._stopped = True
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        # Whatever is left of the group (the JVM ignoring SIGTERM, or a child outliving it).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        self.process.wait(10)
        self._stopped = True

    def __enter__(self) -> HiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def thrift_server_command(
    home: Path, workdir: Path, port: int, cores: int, driver_memory: str, java_options: str = ""
) -> list[str]:
    warehouse = workdir / "warehouse"
    metastore = f"jdbc:derby:;databaseName={workdir / 'metastore_db'};create=true"
    confs = {
        "spark.sql.warehouse.dir": str(warehouse),
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": str(cores),  # 200 by default: slow on a small machine
        "spark.local.dir": str(workdir / "spark-local"),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.hadoop.javax.jdo.option.ConnectionURL": metastore,
        "spark.hadoop.hive.exec.scratchdir": str(workdir / "hive-scratch"),
        "spark.hadoop.hive.exec.local.scratchdir": str(workdir / "hive-local-scratch"),
        "spark.hadoop.hive.downloaded.resources.dir": str(workdir / "hive-resources"),
    }
    hiveconf = {
        "hive.server2.thrift.port": str(port),
        "hive.server2.thrift.bind.host": "127.0.0.1",
        "hive.server2.authentication": "NOSASL",
        "hive.server2.transport.mode": "binary",
    }
    cmd = [str(home / "bin" / "spark-submit"), "--class", THRIFT_SERVER_CLASS, "--master", f"local[{cores}]"]
    java = f"-Dderby.system.home={workdir} {java_options}".strip()
    cmd += ["--driver-memory", driver_memory, "--driver-java-options", java]
    for k, v in confs.items():
        cmd += ["--conf", f"{k}={v}"]
    for k, v in hiveconf.items():
        cmd += ["--hiveconf", f"{k}={v}"]
    return [*cmd, "spark-internal"]


def start_hive_server(
    workdir: Path,
    timeout: float = 180,
    cores: int = 2,
    driver_memory: str = "1g",
    port: int | None = None,
    java_options: str | None = None,
) -> HiveServer:
    """Start the Thrift server in ``workdir`` and return once a HiveServer2Hook query succeeds.

    ``java_options`` (default ``$STOCKML_TEST_HIVE_JAVA_OPTS`` or :data:`DEFAULT_JAVA_OPTIONS`) go to the JVM.
    """
    reason = java_missing()
    if reason:
        raise HiveServerError(reason)
    home = spark_home()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "conf").mkdir(exist_ok=True)  # an empty SPARK_CONF_DIR: no stray spark-defaults
    port = port or free_port()
    if java_options is None:
        java_options = os.environ.get("STOCKML_TEST_HIVE_JAVA_OPTS", DEFAULT_JAVA_OPTIONS)
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(workdir / "conf"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(workdir / "logs"),
        "SPARK_NO_DAEMONIZE": "1",
    }
    env.pop("PYSPARK_SUBMIT_ARGS", None)
    log_path = workdir / "thriftserver.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            thrift_server_command(home, workdir, port, cores, driver_memory, java_options),
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() reaches every child
        )
    server = HiveServer(port, workdir, process, log_path)
    atexit.register(server.stop)  # an interpreter that exits without the fixture's teardown still stops it
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.monotonic() - started
    return server
