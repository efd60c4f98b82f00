"""Starting and stopping ``bentoml serve`` subprocesses: shared by :mod:`bench.serving` and the serving tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.bentos.service:StockForecaster"
# variables of the caller's environment that would change what a started service does
ISOLATE_VARS = (
    "STOCKML_SERVING__REDIS_URL",
    "STOCKML_AUTH__API_KEYS_FILE",
    "STOCKML_AUTH__DISABLED",
    "STOCKML_SERVING__MODEL_NAME",
    "STOCKML_SERVING",  # a whole section as JSON (pydantic-settings reads it too)
    "STOCKML_AUTH",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bentoml_cmd() -> list[str]:
    """The ``bentoml`` executable next to this interpreter, else the one on PATH."""
    exe = Path(sys.executable).with_name("bentoml")
    return [str(exe)] if exe.exists() else [shutil.which("bentoml") or "bentoml"]


def serve(
    target: str, env: dict[str, str], log: IO, port: int | None = None, port_flag: str = "--port"
) -> tuple[subprocess.Popen, str]:
    """``bentoml serve target`` on 127.0.0.1 (a free port unless given), output to the open file ``log``."""
    port = free_port() if port is None else port
    proc = subprocess.Popen(
        [*bentoml_cmd(), "serve", target, "--host", "127.0.0.1", port_flag, str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def wait_ready(url: str, proc: subprocess.Popen | None, log: Path | None, timeout: float = 300) -> None:
    """Poll ``/readyz`` until it answers 200; raise if ``proc`` exits or ``timeout`` passes."""
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:] if log else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)
