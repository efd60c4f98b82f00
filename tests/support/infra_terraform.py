"""What the infrastructure tests (tests/infra/) read and run: the Terraform configuration in
``infra/terraform``, parsed with python-hcl2, its templates rendered by Terraform's own ``templatefile``
(``terraform console``, no provider needed), and the two CLIs of ``.venv-infra`` (``make infra-tools``):
Terraform 1.0.3 and checkov.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TF_ROOT = REPO / "infra" / "terraform"
MODULES = TF_ROOT / "modules"
# The Kubernetes version the manifests are validated against (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.32.0"
# Arguments of a module block that are not the called module's variables.
MODULE_META_ARGS = {"source", "version", "count", "for_each", "depends_on", "providers"}


def tool(name: str) -> Path:
    """A CLI of the infra venv (``STOCKML_INFRA_BIN``, default ``.venv-infra/bin``); skips when it is missing
    (which fails in CI: tests/support/ci_guard.py)."""
    path = Path(os.environ.get("STOCKML_INFRA_BIN", REPO / ".venv-infra" / "bin")) / name
    if not path.exists():
        pytest.skip(f"{path} is missing: run `make infra-tools` (requirements-infra.lock)")
    return path


def module_dirs() -> list[Path]:
    """The root module and every module under modules/."""
    return [TF_ROOT, *sorted(p for p in MODULES.iterdir() if p.is_dir())]


def tf_files() -> list[Path]:
    """The configuration's .tf files (not what `terraform init` left under .terraform/)."""
    return sorted(p for p in TF_ROOT.rglob("*.tf") if ".terraform" not in p.parts)


def unquote(value: object) -> object:
    """python-hcl2 keeps the quotes of string literals and labels: ``'"x"'`` -> ``'x'``."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@cache
def parse_module(directory: Path) -> dict[str, list]:
    """Every top-level block of a module's .tf files, by block type (``variable``, ``module``, ...)."""
    import hcl2

    blocks: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as fh:
            for kind, items in hcl2.load(fh).items():
                if not kind.startswith("__"):  # python-hcl2's __comments__: comments are not code
                    blocks.setdefault(kind, []).extend(items)
    return blocks


def labelled(directory: Path, kind: str) -> dict[str, dict]:
    """Blocks with one label (variable, output, module) by name."""
    out: dict[str, dict] = {}
    for item in parse_module(directory).get(kind, []):
        for label, body in item.items():
            out[str(unquote(label))] = body
    return out


def locals_of(directory: Path) -> dict[str, object]:
    merged: dict[str, object] = {}
    for block in parse_module(directory).get("locals", []):
        merged.update({k: v for k, v in block.items() if k != "__is_block__"})
    return merged


def expressions(node: object) -> list[str]:
    """Every string anywhere under a parsed node (expressions come back as ``${...}`` strings)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() if not str(k).startswith("__") for s in [str(k), *expressions(v)]]
    if isinstance(node, list):
        return [s for v in node for s in expressions(v)]
    return []


def module_source(directory: Path, body: dict) -> Path:
    return (directory / str(unquote(body["source"]))).resolve()


# ---- Templates ------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_TEMPLATEFILE = re.compile(r'templatefile\(\\?"\$\{path\.module\}/([^"\\]+)\\?",\s*local\.(\w+)\)')


def template_variables(path: Path) -> set[str]:
    """The variables a template interpolates; only plain ``${name}`` is used in this repository's templates."""
    text = path.read_text()
    assert "%{" not in text, f"{path}: template directives are not used here (keep templates plain ${{name}})"
    names = set(_INTERPOLATION.findall(text))
    bad = sorted(n for n in names if not re.fullmatch(r"[a-z_][a-z0-9_]*", n))
    assert not bad, f"{path}: interpolations other than a plain variable name: {bad}"
    return names


def templatefile_calls(directory: Path) -> list[tuple[Path, str]]:
    """(template, name of the local map it is rendered with) for every templatefile call of a module."""
    calls = []
    for kind in ("resource", "data", "module", "output", "locals"):
        for text in expressions(parse_module(directory).get(kind, [])):
            calls += [(directory / rel, local) for rel, local in _TEMPLATEFILE.findall(text)]
    return sorted(set(calls))


def _hcl_string(text: str) -> str:
    """A Terraform string literal holding ``text`` exactly (JSON escapes plus template escapes)."""
    return json.dumps(text).replace("${", "$${").replace("%{", "%%{")


def render_templates(jobs: list[tuple[Path, dict]]) -> list[object]:
    """Render each (template, variables) with Terraform's templatefile and decode it as YAML
    (``yamldecode``, as the modules do), in one ``terraform console`` run; returns the decoded values."""
    terraform = tool("terraform")
    exprs = [
        f"yamldecode(templatefile({_hcl_string(str(path))}, jsondecode({_hcl_string(json.dumps(vars_))})))"
        for path, vars_ in jobs
    ]
    # A piped `terraform console` prints only its last result: one expression holds them all.
    proc = _console(terraform, f"jsonencode([{', '.join(exprs)}])")
    if proc.returncode != 0:  # name the template(s) that fail
        failures = [f"{path}: {_console(terraform, e).stderr}" for (path, _), e in zip(jobs, exprs, strict=True)]
        pytest.fail("templatefile/yamldecode failed:\n" + "\n".join(f for f in failures if not f.endswith(": ")))
    out = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(out) == 1, proc.stdout[-3000:]
    decoded = json.loads(json.loads(out[0].replace("$${", "${").replace("%%{", "%{")))
    assert len(decoded) == len(jobs)
    return decoded


def _console(terraform: Path, expression: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(terraform), "console"],
        input=expression + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=_empty_dir(),
    )
    proc.stderr = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr)
    return proc


@cache
def _empty_dir() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp(prefix="stockml-tf-console-"))


# ---- checkov --------------------------------------------------------------------------------------


def run_checkov(directory: Path, framework: str) -> dict:
    """checkov's JSON report of one framework over a directory."""
    proc = subprocess.run(
        [str(tool("checkov")), "-d", str(directory), "--framework", framework, "-o", "json", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"},
    )
    assert proc.stdout.strip(), f"checkov printed nothing (rc {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert len(reports) == 1, [r.get("check_type") for r in reports]
    if "results" not in reports[0]:  # nothing to report: checkov prints the bare summary
        return {"summary": reports[0], "results": {"passed_checks": [], "failed_checks": [], "skipped_checks": []}}
    return reports[0]
