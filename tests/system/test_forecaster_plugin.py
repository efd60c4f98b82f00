"""A forecaster added by a separately installed package: backtested, routed, registered, served.

The fixture package ``tests/support/fixtures/toy_forecaster`` declares a member (a moving average) in the
``stockml.forecasters`` entry-point group and nothing else. It is installed into a folder of its
own (``pip install --target``, no download) that is put on ``PYTHONPATH``; then the real CLI runs
the pipeline with it, and a real ``bentoml serve`` serves the registered model, with no change to
stockml's code. The registered model's manifest names the member's package and version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from bench.serving_stack import SERVICE, serve, stop, wait_ready

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "support" / "fixtures" / "toy_forecaster"
METHODS = "Naive2,SES,TSB,CrostonSBA,MovingAverage"
pytestmark = pytest.mark.slow


def _run(cmd: list[str], env: dict, cwd: Path) -> str:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(FIXTURE, src, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp / "site"
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site),
          str(src)], dict(os.environ), tmp)  # fmt: skip
    repo = Path(__file__).resolve().parents[2]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},  # other tests' registries
        "PYTHONPATH": os.pathsep.join([str(site), str(repo)]),
        "STOCKML_HOME": str(tmp / ".stockml"),
        "STOCKML_AUTOML_TRIALS": "0",
        "STOCKML_ZOO_TRIALS": "0",
        "STOCKML_N_JOBS": "1",
    }
    return env, tmp


def test_an_installed_plugin_member_is_backtested_routed_registered_and_served(plugin_env):
    env, tmp = plugin_env
    stockml = str(Path(sys.executable).with_name("stockml"))
    _run([stockml, "demo-data", "--skus", "30", "--weeks", "120", "--seed", "3"], env, tmp)
    _run([stockml, "run", "--methods", METHODS, "--run-id", "plugin"], env, tmp)

    # What the registry holds: the plugin's member with its package and version, in the router's methods.
    probe = (
        "import json, mlflow\n"
        "from stockml.settings import get_settings\n"
        "mlflow.set_tracking_uri(get_settings().tracking_uri)\n"
        "mlflow.set_registry_uri(get_settings().tracking_uri)\n"
        "m = mlflow.pyfunc.load_model('models:/stockml-router@champion')\n"
        "py = m.unwrap_python_model()\n"
        "run = mlflow.get_run(m.metadata.run_id)\n"
        "print(json.dumps({'members': py.manifest['members'], 'methods': py.model.router.methods_,\n"
        "                  'metrics': sorted(run.data.metrics)}))\n"
    )
    seen = json.loads(_run([sys.executable, "-c", probe], env, tmp).strip().splitlines()[-1])
    toy = [m for m in seen["members"] if m["method"] == "MovingAverage"]
    assert toy and toy[0]["package"] == "stockml-toy-forecaster" and toy[0]["package_version"] == "0.3.1"
    assert toy[0]["class"] == "toy_forecaster:MovingAverage"
    assert "MovingAverage" in seen["methods"]  # routed: a candidate of the router
    assert "holdout_mase_MovingAverage" in seen["metrics"]  # backtested and scored on the holdout

    key = "plugin-key"
    serve_env = {**env, "STOCKML_AUTH__API_KEYS": f"{key}:admin", "BENTOML_HOME": str(tmp / "bentoml"),
                 "BENTOML_DO_NOT_TRACK": "True"}  # fmt: skip
    log_path = tmp / "serve.log"
    with log_path.open("w") as log:
        proc, url = serve(SERVICE, serve_env, log)
        try:
            wait_ready(url, proc, log_path, timeout=300)
            history = [{"ds": f"2026-{m:02d}-{d:02d}", "y": (m * d) % 7} for m in range(3, 12) for d in (2, 9, 16, 23)]
            r = httpx.post(f"{url}/forecast", json={"horizon": 4, "items": [{"sku": "X", "history": history}]},
                           headers={"Authorization": f"Bearer {key}"}, timeout=120)  # fmt: skip
            assert r.status_code == 200, r.text
            info = httpx.post(f"{url}/model_info", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            assert info.status_code == 200, info.text
            assert "MovingAverage" in info.json()["aliases"]["champion"]["router"]["methods"]
        finally:
            stop(proc)
