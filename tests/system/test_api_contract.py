"""The API contract checked by schemathesis against the running service (issue 11, part 5).

A small router is trained from the shared ``router_data`` catalogue, registered in a temporary SQLite
registry and promoted; ``bentoml serve serving.bentos.service:StockForecaster`` then runs as a
subprocess with its production settings (body limit, middlewares, rate limit set high enough for
one client) and an admin API key, so every operation, ``/admin/reload`` included, is reachable.

``schemathesis run`` (the CLI, as a subprocess) reads the service's own ``/docs.json`` and runs
**all** its checks in the coverage and the fuzzing phases, at most ``MAX_EXAMPLES`` cases per
operation, with a fixed seed (``STOCKML_SCHEMATHESIS_SEED`` picks another). The test fails on any
failure or error schemathesis reports, and on a run that did not test every operation or skipped a
phase. Before the contract fixes that came with this test, the same command reported 8 failures
(422 for schema-valid bodies: a history within one week, a sku or forecast_id given twice, an
empty CSV; ``{"force": 0}`` accepted as a boolean; 413 for bodies larger than the limit).

Settings changed from schemathesis' defaults are in ``tests/support/schemathesis.toml`` with the
reason (413 counts as a rejection, since a body size in bytes cannot be stated in JSON Schema). No
check and no operation is excluded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from receivers import HttpReceiver, SmtpReceiver, http_receiver, smtp_server
from serving_helpers import (
    START_TIMEOUT_S,
    bentoml_serve,
    champion_registry,
    service_env,
    wait_ready,
)

pytestmark = pytest.mark.slow

EXPERIMENT = "stockml-api-contract-test"
ADMIN = "contract-admin-key"
MAX_EXAMPLES = 50
SEED = int(os.environ.get("STOCKML_SCHEMATHESIS_SEED", "1"))
CONFIG = Path(__file__).resolve().parents[1] / "support" / "schemathesis.toml"
SECRET = "contract-secret"


def _notify_env(rx: HttpReceiver, smtp: SmtpReceiver) -> dict[str, str]:
    """Batch notifications switched on, so that /batch publishes callback_url (a pattern of the allow-list:
    only the test's receiver) and notify_email, and schemathesis holds the service to both; what its cases
    send lands in the test's own HTTP and SMTP receivers."""
    return {
        "STOCKML_NOTIFY__CALLBACK_HOSTS": f"127.0.0.1:{rx.port}",
        "STOCKML_NOTIFY__CALLBACK_SECRET": SECRET,
        "STOCKML_NOTIFY__RETRIES": "0",
        "STOCKML_NOTIFY__TIMEOUT_S": "5",
        "STOCKML_NOTIFY__SMTP_HOST": smtp.host,
        "STOCKML_NOTIFY__SMTP_PORT": str(smtp.port),
        "STOCKML_NOTIFY__SMTP_FROM": "contract@example.org",
    }


def _schemathesis() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if not exe.exists():
        pytest.fail(f"schemathesis is not installed next to {sys.executable} (it is pinned in requirements.lock)")
    return [str(exe)]


@pytest.fixture(scope="module")
def service(router_data, tmp_path_factory):
    """The real service with a champion loaded; its URL and the temporary folder."""
    tmp = tmp_path_factory.mktemp("contract")
    with champion_registry(router_data, tmp, EXPERIMENT) as uri, http_receiver() as rx, smtp_server() as smtp:
        env = service_env(tmp, uri, f"{ADMIN}:admin", STOCKML_SERVING__POLL_S="0", **_notify_env(rx, smtp))
        log = tmp / "bentoml-serve.log"
        with bentoml_serve(env, log) as (proc, url):
            wait_ready(url, proc, log, timeout=START_TIMEOUT_S)
            yield {"url": url, "tmp": tmp, "log": log, "receiver": rx, "smtp": smtp}


def test_schemathesis_all_checks_both_phases_find_nothing(service):
    url, tmp = service["url"], service["tmp"]
    report_path = tmp / "schemathesis.json"
    cmd = [
        *_schemathesis(),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{url}/docs.json",
        "--header",
        f"Authorization: Bearer {ADMIN}",
        "--checks",
        "all",
        "--phases",
        "coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=540, cwd=tmp)
    out = run.stdout + run.stderr
    assert report_path.exists(), f"schemathesis wrote no report (exit {run.returncode}):\n{out[-4000:]}"
    report = json.loads(report_path.read_text())
    failures = [(f["code"], f["title"], f["operations"]) for f in report["failures"]]
    assert run.returncode == 0 and report["exit_code"] == 0, f"{failures}\n{out[-6000:]}"
    assert not report["failures"] and not report["errors"], out[-6000:]
    assert report["complete"] and report["stop_reason"] == "completed"
    assert {report["phases"][p]["status"] for p in ("coverage", "fuzzing")} == {"success"}, report["phases"]
    ops = report["operations"]
    with httpx.Client(base_url=url, timeout=30) as anon:
        documented = anon.get("/docs.json").json()["paths"]
    n_documented = sum(len(methods) for methods in documented.values())
    assert ops["tested"] == ops["selected"] == ops["total"] == n_documented and not ops["errored"], ops
    # every POST with a body got its share of cases (GETs without parameters have one case each)
    posts = sum(1 for methods in documented.values() if "post" in methods)
    assert report["test_cases"]["generated"] >= MAX_EXAMPLES * posts, report["test_cases"]


def test_unknown_paths_and_wrong_methods_answer_the_error_body(service):
    """The server's own 404 (unknown path) and 405 (wrong method) come in the documented ErrorBody shape."""
    with httpx.Client(base_url=service["url"], headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30) as c:
        missing = c.post("/no-such-endpoint", json={})
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/json"
        assert missing.json() == {"error": "Not Found"}
        wrong = c.get("/forecast")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST" and set(wrong.json()) == {"error"}
        readyz = c.get("/docs.json").json()["paths"]["/readyz"]["get"]["responses"]
        assert readyz["503"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        infra = c.post("/readyz")  # BentoML's own route: GET only
        assert infra.status_code == 405 and "GET" in infra.headers["allow"] and set(infra.json()) == {"error"}


def test_batch_callbacks_on_the_running_service(service, router_data):
    """A callback host off the allow-list is a 422 naming the field; an allowed one is POSTed the signed body
    when the job ends and the e-mail is sent, and /batch_status shows both deliveries."""
    from serving_helpers import demand_csv

    from monitoring.delivery import verify

    rx, smtp = service["receiver"], service["smtp"]
    csv = demand_csv(router_data["demand"], 3)
    with httpx.Client(base_url=service["url"], headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60) as c:
        off = c.post("/batch", files={"file": ("d.csv", csv)}, data={"callback_url": "https://evil.example.com/x"})
        assert off.status_code == 422 and off.json()["detail"][0]["field"] == "callback_url", off.text
        assert "not on the callback allow-list" in off.json()["error"]
        form = c.get("/docs.json").json()["paths"]["/batch"]["post"]["requestBody"]["content"]["multipart/form-data"]
        assert set(form["schema"]["properties"]) == {"file", "horizon", "callback_url", "notify_email"}
        hook = rx.base + "/contract-check"
        data = {"callback_url": hook, "notify_email": "planner@example.org", "horizon": "4"}
        job = c.post("/batch", files={"file": ("d.csv", csv)}, data=data)
        assert job.status_code == 200, job.text
        job_id = job.json()["job_id"]
        deadline = time.monotonic() + 120
        while True:
            status = c.post("/batch_status", json={"job_id": job_id}).json()
            states = {c: n["state"] for c, n in status["notifications"].items()}
            if set(states) == {"callback", "email"} and "pending" not in states.values():
                break  # both tried (the channels appear once the job has ended)
            assert time.monotonic() < deadline, status
            time.sleep(0.5)
    assert status["state"] == "done" and status["notifications"]["callback"]["state"] == "delivered", status
    assert status["notifications"]["email"]["state"] == "delivered", status
    (got,) = [r for r in rx.requests if r.path == "/contract-check"]
    assert verify(SECRET, got.body, got.headers["X-Stockml-Signature"])
    body = json.loads(got.body)
    assert body["job_id"] == job_id and body["state"] == "done" and body["skus_done"] == 3 and body["result_rows"] == 12
    assert got.headers["X-Stockml-Timestamp"] == str(body["timestamp"])
    mails = [m for m in smtp.messages if job_id in str(m.message["Subject"])]
    assert len(mails) == 1 and mails[0].rcpt_tos == ["planner@example.org"]
