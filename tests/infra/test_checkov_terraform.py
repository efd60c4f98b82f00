"""checkov over the whole Terraform configuration (the root and every module it calls): no failed check;
each skip is an inline `#checkov:skip=ID:reason` on its resource, and every one gives its reason. And
checkov's secrets scan over every file of it (the .tf files, the Helm values and manifest templates,
the tfvars example): no secret in the code."""

from __future__ import annotations

import shutil

from infra_terraform import TF_ROOT, run_checkov


def test_checkov_finds_no_failed_terraform_check_and_every_skip_has_a_reason():
    report = run_checkov(TF_ROOT, "terraform")
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= 40 and summary["passed"] >= 100, summary
    failed = [(c["check_id"], c["resource"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
    skipped = report["results"]["skipped_checks"]
    for check in skipped:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) >= 30, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    # the skips are the documented ones (README "Deployment (Terraform)"), nothing more
    assert {c["check_id"] for c in skipped} <= {
        "CKV_AWS_18",
        "CKV_AWS_109",
        "CKV_AWS_111",
        "CKV_AWS_144",
        "CKV_AWS_356",
        "CKV2_AWS_57",
        "CKV2_AWS_62",
    }


def test_checkov_secrets_scan_finds_no_secret_in_any_file(tmp_path):
    # checkov's secrets scan reads files by extension: the templates are scanned under their YAML
    # name, the tfvars example under a .tf one.
    tree = tmp_path / "terraform"
    shutil.copytree(TF_ROOT, tree, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "terraform.tfvars"))
    templates = list(tree.rglob("*.tpl"))
    for path in templates:
        path.rename(path.with_suffix(""))
    (tree / "terraform.tfvars.example").rename(tree / "terraform-tfvars-example.tf")
    assert len(templates) >= 10
    report = run_checkov(tree, "secrets")
    failed = [(c["check_id"], c["file_path"], c["file_line_range"]) for c in report["results"]["failed_checks"]]
    assert not failed, failed
