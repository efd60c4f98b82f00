"""A throw-away PostgreSQL cluster on a free port, for fault tests that stop and start the server.

The machine's shared server (127.0.0.1:5432) is used by other tests at the same time, so a test that
kills Postgres gets a cluster of its own: ``initdb`` into a temporary folder (as the ``postgres`` OS
user when run as root: initdb refuses root), ``pg_ctl start`` on a free port, trust auth, database
``test``. :meth:`stop` with ``immediate`` is a crash (no checkpoint, connections cut); :meth:`start`
brings the same data back.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _bin(name: str) -> str:
    on_path = shutil.which(name)
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([on_path] if on_path else [])
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} not found (looked in /usr/lib/postgresql/*/bin and PATH)")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPostgres:
    """A private cluster: ``with ThrowawayPostgres() as pg: pg.uri`` (``postgresql://postgres@127.0.0.1:<port>/test``)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stockml-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.log = self.root / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    @property
    def uri(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = ["runuser", "-u", "postgres", "--", *cmd] if self._as_postgres else list(cmd)
        proc = subprocess.run(full, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        return proc

    def __enter__(self) -> ThrowawayPostgres:
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "test")
        return self

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: like a crash (no shutdown checkpoint, every connection cut)."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def is_up(self) -> bool:
        return self._run(_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), check=False).returncode == 0

    def __exit__(self, *exc: object) -> None:
        self.stop("immediate")
        for _ in range(20):
            if not self.is_up():
                break
            time.sleep(0.5)
        shutil.rmtree(self.root, ignore_errors=True)
