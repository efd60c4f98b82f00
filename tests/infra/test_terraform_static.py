"""The Terraform configuration in infra/terraform, checked without a cloud: formatted as `terraform fmt`
wants, every file parsed, every variable typed, documented and used, every module call wired to the
called module's variables, every `module.X.Y` an output of X, versions pinned, no secret in the code."""

from __future__ import annotations

import re
import subprocess

import pytest
from infra_terraform import (
    MODULE_META_ARGS,
    MODULES,
    TF_ROOT,
    expressions,
    labelled,
    module_dirs,
    module_source,
    parse_module,
    tf_files,
    tool,
    unquote,
)

MODULE_IDS = [str(d.relative_to(TF_ROOT)) or "root" for d in module_dirs()]


def test_terraform_fmt_check_passes():
    proc = subprocess.run(
        [str(tool("terraform")), "fmt", "-check", "-recursive", "-diff", str(TF_ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"terraform fmt -check -recursive failed:\n{proc.stdout}{proc.stderr}"


def test_tfvars_example_is_formatted(tmp_path):
    # fmt -recursive only looks at *.tf and *.tfvars: check the example under a .tfvars name
    copy = tmp_path / "example.tfvars"
    copy.write_text((TF_ROOT / "terraform.tfvars.example").read_text())
    proc = subprocess.run([str(tool("terraform")), "fmt", "-check", "-diff", str(copy)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_tf_file_parses():
    import hcl2

    files = tf_files()
    assert len(files) >= 20, files
    for path in files:
        with path.open() as fh:
            assert hcl2.load(fh), f"{path} parsed to nothing"


def test_the_cloud_and_component_modules_exist():
    names = {d.name for d in module_dirs()[1:]}
    assert names == {"cloud_aws", "platform", "airflow", "mlflow", "bentoml", "evidently", "spark"}


def test_required_version_and_pinned_providers():
    root = parse_module(TF_ROOT)["terraform"][0]
    assert unquote(root["required_version"]) == ">= 1.0.3"
    providers = root["required_providers"][0]
    assert set(providers) - {"__is_block__"} == {"aws", "kubernetes", "helm", "random"}
    for name, spec in providers.items():
        if name != "__is_block__":
            assert re.fullmatch(r"\d+\.\d+\.\d+", unquote(spec["version"])), f"{name} is not pinned: {spec}"
    for directory in module_dirs()[1:]:
        block = parse_module(directory)["terraform"][0]
        assert unquote(block["required_version"]) == ">= 1.0.3", directory


@pytest.mark.parametrize("directory", module_dirs(), ids=MODULE_IDS)
def test_every_variable_is_typed_documented_and_used(directory):
    variables = labelled(directory, "variable")
    assert variables, f"{directory} declares no variable"
    used_in = " ".join(
        s for kind, items in parse_module(directory).items() if kind != "variable" for s in expressions(items)
    )
    for name, body in variables.items():
        assert body.get("type"), f"{directory.name}: variable {name} has no type"
        assert len(str(unquote(body.get("description", "")))) >= 10, f"{directory.name}: variable {name} undocumented"
        assert re.search(rf"\bvar\.{name}\b", used_in), f"{directory.name}: variable {name} is never used"


@pytest.mark.parametrize("directory", module_dirs(), ids=MODULE_IDS)
def test_every_output_is_documented(directory):
    outputs = labelled(directory, "output")
    assert outputs, f"{directory} has no output"
    for name, body in outputs.items():
        assert len(str(unquote(body.get("description", "")))) >= 10, f"{directory.name}: output {name} undocumented"


def test_module_calls_give_exactly_the_called_modules_variables():
    calls = labelled(TF_ROOT, "module")
    assert set(calls) == {"cloud", "platform", "mlflow", "airflow", "bentoml", "evidently", "spark"}
    for call, body in calls.items():
        target = module_source(TF_ROOT, body)
        declared = labelled(target, "variable")
        given = set(body) - MODULE_META_ARGS - {"__is_block__"}
        unknown = given - set(declared)
        assert not unknown, f"module {call} passes arguments that {target.name} does not declare: {sorted(unknown)}"
        missing = {n for n, v in declared.items() if "default" not in v} - given
        assert not missing, f"module {call} misses required variables of {target.name}: {sorted(missing)}"
        implicit = set(declared) - given
        assert not implicit, f"module {call} leaves variables of {target.name} to their defaults: {sorted(implicit)}"


def test_module_output_references_exist():
    calls = labelled(TF_ROOT, "module")
    text = " ".join(expressions(parse_module(TF_ROOT)))
    refs = set(re.findall(r"\bmodule\.(\w+)(?:\[[^\]]*\])?\.(\w+)", text))
    assert len(refs) >= 20, refs
    for call, output in refs:
        assert call in calls, f"module.{call} is referenced but not declared"
        outputs = labelled(module_source(TF_ROOT, calls[call]), "output")
        assert output in outputs, f"module.{call}.{output}: {calls[call]['source']} has no output {output}"


def test_root_outputs_every_endpoint():
    outputs = labelled(TF_ROOT, "output")
    for endpoint in ("airflow_ui_url", "mlflow_tracking_uri", "bentoml_url", "evidently_ui_url"):
        assert endpoint in outputs
    assert {"airflow_db_endpoint", "mlflow_db_endpoint", "redis_endpoint", "artifact_root"} <= set(outputs)


def test_spark_is_optional_and_off_by_default():
    spark = labelled(TF_ROOT, "module")["spark"]
    assert spark["count"] == "${var.spark_enabled ? 1 : 0}"
    assert labelled(TF_ROOT, "variable")["spark_enabled"]["default"] is False


def test_no_secret_in_the_code():
    # Secrets are inputs (sensitive, no default) or generated (random_password) and stored in Secrets
    # Manager / Kubernetes secrets: no literal password, token or key in any file of the configuration.
    literal = re.compile(r'(password|secret|token|api_key|auth_token)\w*\s*=\s*"[^"$]{4,}"', re.IGNORECASE)
    for path in [*tf_files(), *TF_ROOT.rglob("*.tpl"), TF_ROOT / "terraform.tfvars.example"]:
        hits = literal.findall(path.read_text())
        assert not hits, f"{path}: literal secret-like assignment {hits}"
    for directory in module_dirs():
        for name, body in labelled(directory, "variable").items():
            if body.get("sensitive"):
                assert "default" not in body, f"{directory.name}: sensitive variable {name} has a default"
    source = labelled(TF_ROOT, "variable")["source_db_connection"]
    assert source.get("sensitive") is True
    # the source database is only an input: no resource of the configuration manages a database named so
    assert "source" not in " ".join(expressions(parse_module(TF_ROOT / "modules" / "cloud_aws").get("resource", [])))


def test_tfvars_example_sets_only_root_variables_and_no_sensitive_one():
    import hcl2

    with (TF_ROOT / "terraform.tfvars.example").open() as fh:
        example = {k: v for k, v in hcl2.load(fh).items() if not k.startswith("__")}
    variables = labelled(TF_ROOT, "variable")
    unknown = set(example) - set(variables)
    assert not unknown, f"terraform.tfvars.example sets undeclared variables: {sorted(unknown)}"
    required = {n for n, v in variables.items() if "default" not in v and not v.get("sensitive")}
    assert required <= set(example), f"the example leaves required variables out: {sorted(required - set(example))}"
    assert not {n for n in example if variables[n].get("sensitive")}, "a sensitive variable in the example file"


def test_the_workers_consume_the_queues_the_dags_send_tasks_to():
    """The chart's workers take ``celery_queues``; the DAG processor there names the queues from the stockml
    settings (no STOCKML_AIRFLOW__* in the chart's env: their defaults) and Airflow's default queue, the
    list's first entry. The variable's default and the example must hold exactly those three."""
    import hcl2

    from stockml.settings import AirflowSettings

    dags = AirflowSettings()
    wanted = ["default", dags.training_queue, dags.maintenance_queue]
    variable = labelled(TF_ROOT, "variable")["celery_queues"]
    assert [unquote(q) for q in variable["default"]] == wanted
    with (TF_ROOT / "terraform.tfvars.example").open() as fh:
        assert [unquote(q) for q in hcl2.load(fh)["celery_queues"]] == wanted
    assert not re.search(r"name: STOCKML_AIRFLOW__", (MODULES / "airflow" / "values.yaml.tpl").read_text())
