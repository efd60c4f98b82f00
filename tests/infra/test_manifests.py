"""The Kubernetes objects the modules define themselves (MLflow, the forecast service, the Evidently UI,
the shared volume) and the Helm values of the charts: YAML templates that Terraform renders with
templatefile. Here Terraform's own templatefile renders them with the values of terraform.tfvars.example
(`terraform console`, no provider needed), each object is validated against the Kubernetes schemas
(kubernetes-validate) and checked by checkov; the Helm values are asserted to hold the CeleryExecutor
and the autoscaling set-up (the charts themselves cannot be fetched or rendered here)."""

from __future__ import annotations

import re

import pytest
import yaml
from infra_terraform import (
    KUBERNETES_VERSION,
    MODULES,
    TF_ROOT,
    labelled,
    locals_of,
    module_dirs,
    module_source,
    render_templates,
    run_checkov,
    template_variables,
    templatefile_calls,
    unquote,
)

# Template variables whose value is computed in Terraform (a resource's name, max(), jsonencode(), ...):
# the value Terraform would compute for the example configuration.
COMPUTED = {
    "namespace": "stockml",
    "backend_secret": "mlflow-backend-store",
    "secret_name": "stockml-serving",
    "service_account_annotations": '{"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/stockml-mlflow"}',
    "artifacts_destination": "s3://stockml-mlflow-artifacts-123456789012/mlflow",
    "mlflow_tracking_uri": "http://mlflow.stockml.svc.cluster.local:5000",
    "max_replicas": 10,
    "cpu_request": "1000m",
    "cpu_limit": "2000m",
    "state_claim": "stockml-home",
    "metadata_secret": "airflow-metadata",
    "result_secret": "airflow-result-backend",
    "broker_secret": "airflow-broker",
    "keys_secret": "airflow-keys",
    "source_secret": "stockml-source",
    "queues": "default,training,maintenance",
    "default_queue": "default",
    "worker_max": 10,
    "job_namespace": "stockml",
}


def _example_tfvars() -> dict:
    import hcl2

    with (TF_ROOT / "terraform.tfvars.example").open() as fh:
        return {k: _unquote_all(v) for k, v in hcl2.load(fh).items() if not k.startswith("__")}


def _unquote_all(value: object) -> object:
    if isinstance(value, list):
        return [_unquote_all(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): _unquote_all(v) for k, v in value.items()}
    return unquote(value)


def _literal(value: object) -> object:
    value = unquote(value)
    return None if isinstance(value, str) and "${" in value else value


def _example_value(directory, key: str, expr: object) -> object:
    """The value a template variable takes for the example configuration: a literal, a local literal,
    or a module variable traced through the root module call to terraform.tfvars.example (or the root
    variable's default); what Terraform computes comes from COMPUTED."""
    if _literal(expr) is not None:
        return _literal(expr)
    local = re.fullmatch(r"\$\{local\.(\w+)\}", str(expr))
    if local and _literal(locals_of(directory).get(local.group(1))) is not None:
        return _literal(locals_of(directory)[local.group(1)])
    var = re.fullmatch(r"\$\{var\.(\w+)\}", str(expr))
    if var and directory != TF_ROOT:
        calls = [b for b in labelled(TF_ROOT, "module").values() if module_source(TF_ROOT, b) == directory]
        argument = calls[0].get(var.group(1), "") if calls else ""
        if re.fullmatch(r"\$\{local\.\w+\}", str(argument)):
            return _example_value(TF_ROOT, key, argument)
        root_var = re.fullmatch(r"\$\{var\.(\w+)\}", str(argument))
        if root_var:
            example, variables = _example_tfvars(), labelled(TF_ROOT, "variable")
            name = root_var.group(1)
            return example[name] if name in example else unquote(variables[name]["default"])
    if key not in COMPUTED:
        NO_EXAMPLE.append(f"{directory.name}: {key} = {expr}")
    return COMPUTED.get(key, f"no-example-for-{key}")


def _jobs() -> list[tuple]:
    jobs = []
    for directory in module_dirs():
        for template, local in templatefile_calls(directory):
            mapping = locals_of(directory)[local]
            values = {k: _example_value(directory, k, v) for k, v in mapping.items()}
            jobs.append((directory, template, mapping, values))
    return jobs


NO_EXAMPLE: list[str] = []
JOBS = _jobs()


def test_every_template_variable_has_an_example_value():
    assert not NO_EXAMPLE, f"template variables without an example value (add them to COMPUTED): {NO_EXAMPLE}"


@pytest.fixture(scope="module")
def rendered() -> dict[str, object]:
    """Every template rendered by Terraform with the example configuration, by path relative to modules/."""
    out = render_templates([(template, values) for _, template, _, values in JOBS])
    return {str(template.relative_to(MODULES)): obj for (_, template, _, _), obj in zip(JOBS, out, strict=True)}


def test_every_template_is_rendered_by_its_module():
    templates = {p for p in MODULES.rglob("*.tpl")}
    assert len(templates) >= 10
    assert templates == {template for _, template, _, _ in JOBS}, "a template no module renders"


@pytest.mark.parametrize("job", JOBS, ids=[str(j[1].relative_to(MODULES)) for j in JOBS])
def test_every_template_variable_is_passed_by_the_module(job):
    directory, template, mapping, _ = job
    missing = template_variables(template) - set(mapping)
    assert not missing, f"{template.name} uses variables that {directory.name} does not pass: {sorted(missing)}"


def test_every_variable_a_module_passes_is_used_by_a_template():
    used: dict[tuple, set] = {}
    for directory, template, mapping, _ in JOBS:
        key = (directory.name, tuple(sorted(mapping)))
        used.setdefault(key, set()).update(template_variables(template))
    for (module, passed), names in used.items():
        assert set(passed) <= names, f"{module} passes template variables no template uses: {set(passed) - names}"


def _manifests(rendered: dict) -> dict[str, dict]:
    return {path: obj for path, obj in rendered.items() if "/manifests/" in path}


def test_manifests_validate_against_the_kubernetes_schemas(rendered):
    import kubernetes_validate

    manifests = _manifests(rendered)
    kinds = sorted(obj["kind"] for obj in manifests.values())
    assert kinds.count("Deployment") == 3 and "HorizontalPodAutoscaler" in kinds, kinds
    for path, obj in manifests.items():
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path} is not a valid Kubernetes {KUBERNETES_VERSION} object: {exc.message} at {exc.path}")


def _containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"] if obj["kind"] == "Deployment" else []


def test_deployments_are_hardened_and_pinned(rendered):
    for path, obj in _manifests(rendered).items():
        for container in _containers(obj):
            image = container["image"]
            assert re.search(r":[A-Za-z0-9_][A-Za-z0-9._-]*$", image) and not image.endswith(":latest"), path
            assert container["resources"]["requests"] and container["resources"]["limits"], path
            assert container["readinessProbe"] and container["livenessProbe"], path
            ctx = container["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False, path
            assert ctx["capabilities"]["drop"] == ["ALL"], path
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True, path


def test_the_forecast_service_probes_its_health_endpoints_and_autoscales(rendered):
    deployment = rendered["bentoml/manifests/deployment.yaml.tpl"]
    hpa = rendered["bentoml/manifests/hpa.yaml.tpl"]
    (container,) = _containers(deployment)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_checkov_passes_the_rendered_manifests(rendered, tmp_path):
    for path, obj in _manifests(rendered).items():
        (tmp_path / path.replace("/", "__").replace(".tpl", "")).write_text(yaml.safe_dump(obj, sort_keys=False))
    report = run_checkov(tmp_path, "kubernetes")
    assert report["summary"]["passed"] > 50, report["summary"]
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    for check in report["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment") or "") >= 20, f"skip without a reason: {check}"


def test_airflow_values_set_up_celery_with_autoscaled_workers(rendered):
    values = rendered["airflow/values.yaml.tpl"]
    assert values["executor"] == "CeleryExecutor"
    assert values["postgresql"]["enabled"] is False and values["redis"]["enabled"] is False
    assert {"metadataSecretName", "resultBackendSecretName", "brokerUrlSecretName"} <= set(values["data"])
    keda = values["workers"]["keda"]
    assert keda["enabled"] is True and 0 <= keda["minReplicaCount"] <= keda["maxReplicaCount"]
    assert "--queues default,training,maintenance" in values["workers"]["args"][-1]
    assert values["config"]["operators"]["default_queue"] == "default"
    assert values["dags"]["gitSync"]["enabled"] is True
    assert values["config"]["core"]["plugins_folder"].startswith("/opt/airflow/dags/repo/")
    env = {e["envName"]: e["secretName"] for e in values["secret"]}
    assert env["AIRFLOW_CONN_STOCKML_SOURCE"] == "stockml-source"
    assert values["images"]["airflow"]["tag"] != "latest"


def test_spark_operator_values_watch_the_stockml_namespace(rendered):
    values = rendered["spark/values.yaml.tpl"]
    assert values["spark"]["jobNamespaces"] == ["stockml"]
    assert values["spark"]["serviceAccount"]["create"] is True
