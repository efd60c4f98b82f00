"""A router whose members include TimesFM, served by the real ``bentoml serve``: the service reads
STOCKML_TIMESFM_CHECKPOINT through its settings, loads the champion and forecasts when the checkpoint is
there, and where it is absent refuses the champion (not ready) with the missing checkpoint named in
``/model_info``. The checkpoint is the tests' randomly initialised tiny one (the release cannot be
downloaded here)."""

from __future__ import annotations

import time

import httpx
import pytest
from serving_helpers import START_TIMEOUT_S, auth, bentoml_serve, forecast_items, service_env, wait_ready
from timesfm_checkpoint import register_timesfm_router

pytestmark = pytest.mark.slow

ADMIN = "timesfm-admin-key"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A fresh SQLite registry whose stockml-router v1 (routing over Naive, SES and TimesFM) is the champion."""
    tmp = tmp_path_factory.mktemp("serving-timesfm")
    checkpoint, uri, demand = register_timesfm_router(tmp, "stockml-timesfm-serving-test")
    return {"tmp": tmp, "uri": uri, "checkpoint": checkpoint, "demand": demand}


def _env(registry: dict, name: str, **extra: str) -> dict:
    tmp = registry["tmp"] / name
    env = service_env(tmp, registry["uri"], f"{ADMIN}:admin", STOCKML_SERVING__POLL_S="0", **extra)
    env.pop("STOCKML_TIMESFM_CHECKPOINT", None)
    return {**env, **extra, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp / "hf-cache")}


def test_served_with_the_checkpoint_and_refused_without_it(registry):
    env = _env(registry, "with", STOCKML_TIMESFM_CHECKPOINT=str(registry["checkpoint"]))
    log_path = registry["tmp"] / "with.log"
    with bentoml_serve(env, log_path) as (proc, url):
        wait_ready(url, proc, log_path, timeout=START_TIMEOUT_S)
        with httpx.Client(base_url=url, headers=auth(ADMIN), timeout=120) as c:
            info = c.post("/model_info").json()
            assert info["timesfm"]["available"] and info["timesfm"]["source"] == "setting"
            assert info["aliases"]["champion"]["version"] == "1" and info["last_error"] is None
            answer = c.post("/forecast", json={"horizon": 3, "items": forecast_items(registry["demand"], 2)})
            assert answer.status_code == 200, answer.text
            assert all(len(item["forecasts"]) == 3 for item in answer.json()["items"])

    env = _env(registry, "without")
    log_path = registry["tmp"] / "without.log"
    with bentoml_serve(env, log_path) as (proc, url):
        deadline, info = time.time() + START_TIMEOUT_S, None
        with httpx.Client(base_url=url, headers=auth(ADMIN), timeout=30) as c:
            while time.time() < deadline:
                assert proc.poll() is None, log_path.read_text()[-3000:]
                try:
                    r = c.post("/model_info")
                except httpx.TransportError:
                    r = None
                if r is not None and r.status_code == 200 and r.json()["last_check"]:
                    info = r.json()
                    break
                time.sleep(0.5)
            assert info is not None, "no /model_info answer"
            assert not info["ready"] and info["aliases"]["champion"] is None
            assert info["timesfm"]["available"] is False
            assert "STOCKML_TIMESFM_CHECKPOINT" in info["timesfm"]["detail"]
            assert "['TimesFM']" in info["last_error"] and "no checkpoint configured" in info["last_error"]
            assert httpx.get(f"{url}/readyz", timeout=10).status_code == 503
