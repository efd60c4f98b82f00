"""The root module's variable validations, run by Terraform 1.0.3 itself: `terraform plan` of a copy of
variables.tf alone (no resource, so no provider to download) accepts terraform.tfvars.example and refuses
broken values with the validation's message."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from infra_terraform import TF_ROOT, tool

SOURCE = "postgresql://etl:not-a-real-password@erp-db.internal:5432/erp"


@pytest.fixture(scope="module")
def variables_only(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tf-variables")
    shutil.copy(TF_ROOT / "variables.tf", directory / "variables.tf")
    shutil.copy(TF_ROOT / "terraform.tfvars.example", directory / "terraform.tfvars")
    proc = subprocess.run(
        [str(tool("terraform")), "init", "-backend=false", "-input=false", "-no-color"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return directory


def _plan(directory, *overrides: str, source: str = SOURCE) -> subprocess.CompletedProcess:
    args = [str(tool("terraform")), "plan", "-input=false", "-no-color", "-lock=false", "-refresh=false"]
    args += [f"-var={o}" for o in overrides]
    env = {"TF_VAR_source_db_connection": source, "PATH": "/usr/bin:/bin", "HOME": str(directory)}
    return subprocess.run(args, cwd=directory, capture_output=True, text=True, timeout=120, env=env)


def test_the_example_configuration_passes_every_validation(variables_only):
    proc = _plan(variables_only)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No changes" in proc.stdout


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("bentoml_image=registry.example.com/stockml-forecaster:latest", "tag other than latest"),
        ("airflow_image_tag=latest", "other than latest"),
        ('cluster_cidr_blocks=["0.0.0.0/0"]', "valid CIDR block"),
        ('cluster_cidr_blocks=["10.0.0.0/33"]', "valid CIDR block"),
        ("airflow_worker_max_replicas=0", "between 1 and 100"),
        ("bentoml_target_cpu_utilization_pct=99", "between 10 and 95"),
        ("namespace=default", "DNS label"),
        ('private_subnet_ids=["subnet-0123456789abcdef0"]', "at least two subnet"),
        ("name_prefix=Stock_ML", "name_prefix"),
        ('celery_queues=["Default"]', "queue"),
        ('celery_queues=["default","training"]', "training and maintenance queues"),
    ],
)
def test_a_broken_value_is_refused(variables_only, override, message):
    proc = _plan(variables_only, override)
    assert proc.returncode != 0, f"{override} was accepted"
    assert message in " ".join((proc.stdout + proc.stderr).split()), proc.stderr


def test_the_source_connection_must_be_an_airflow_connection(variables_only):
    assert _plan(variables_only, source='{"conn_type": "postgres", "host": "erp-db"}').returncode == 0
    proc = _plan(variables_only, source="erp-db.internal:5432")
    assert proc.returncode != 0 and "Airflow connection URI" in " ".join(proc.stderr.split())
