"""A throw-away ``redis-server`` on a free port, for tests that stop and restart Redis.

The machine's own Redis (6379) is shared by other tests and other jobs: fault tests never touch it.
This one keeps nothing on disk (``--save "" --appendonly no``), so a restart comes back empty, as a
Redis that lost its memory would.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRedis:
    """``start()``, ``kill()`` (SIGKILL: no goodbye to the clients), ``start()`` again on the same port."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:  # a failure, not a skip: CI must not go green without this test
            raise RuntimeError("redis-server is not on PATH: install Redis (apt-get install redis-server)")
        self.exe = exe
        self.root = root
        self.port = port or free_port()
        self.log = root / f"redis-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self, timeout: float = 30) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(Exception):
                if self.client().ping():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} not answering after {timeout} s")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed Redis dies, and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> ThrowawayRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
