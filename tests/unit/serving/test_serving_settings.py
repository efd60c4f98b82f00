"""The serving settings sections (one settings object, ``STOCKML_<SECTION>__<FIELD>``), README's table of
them, and the layering rules of ``serving/``: no environment reads, no private BentoML/MLflow modules, no
``type: ignore`` on a return, no module over 450 lines."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from stockml.settings import Settings, settings_table
from stockml.settings_serving import SECTIONS

ROOT = Path(__file__).resolve().parents[3]
SERVING = sorted((ROOT / "serving").rglob("*.py"))


def test_readme_table_is_the_settings_object():
    """The serving sections are rows of README's one settings table (test_settings.py checks all of it)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings-table:start -->\n(.*?)<!-- settings-table:end -->", readme, re.S)
    assert block, "README has no settings table"
    assert block.group(1) == settings_table()
    for section, model in SECTIONS.items():
        assert section in Settings.model_fields
        for name, f in model.model_fields.items():
            assert f.description, f"{section}.{name} has no description"
            assert f"`STOCKML_{section.upper()}__{name.upper()}`" in block.group(1)


def test_nested_environment_variables(monkeypatch):
    for k, v in {
        "STOCKML_SERVING__POLL_S": "2",
        "STOCKML_SERVING__REDIS_URL": "",  # set but empty: unset
        "STOCKML_SERVING__DB_URL": "postgresql+psycopg://u@h/db",
        "STOCKML_AUTH__API_KEYS_FILE": "/run/keys",
        "STOCKML_AUTH__OIDC_ADMIN_ROLE": "boss",
        "STOCKML_BANDIT__MIN_STOP_OUTCOMES": "7",
        "STOCKML_BATCH__CHUNK_SKUS": "10",
    }.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.serving.poll_s == 2.0 and s.serving.redis_url is None and s.serving.db_url.startswith("postgresql")
    assert str(s.auth.api_keys_file) == "/run/keys" and s.auth.oidc_admin_role == "boss" and not s.auth.oidc_enabled
    assert s.bandit.min_stop_outcomes == 7 and s.batch.chunk_skus == 10
    monkeypatch.setenv("STOCKML_BANDIT__P_PROMOTE", "0.2")  # constraints hold: below 0.5 is refused
    with pytest.raises(ValidationError, match="p_promote"):
        Settings()


def test_serving_reads_no_environment_and_no_private_modules():
    private = re.compile(r"^\s*(from|import)\s+(_bentoml_\w*|bentoml\._internal|mlflow\.\w*\._|mlflow\._)", re.M)
    for path in SERVING:
        text = path.read_text()
        rel = path.relative_to(ROOT)
        assert "os.environ" not in text and "getenv" not in text, f"{rel} reads the environment"
        assert not private.search(text), f"{rel} imports a private module"
        assert not re.search(r"return .*# type: ignore", text), f"{rel} has a type: ignore on a return"
        assert len(text.splitlines()) <= 450, f"{rel} has more than 450 lines"


def test_renamed_variables_are_reported():
    from stockml.settings_serving import RENAMED, renamed_variables

    env = {"STOCKML_API_KEYS": "k:user", "STOCKML_OIDC_ISSUER": "x", "STOCKML_HOME": "/tmp"}
    assert renamed_variables(env) == {
        "STOCKML_API_KEYS": "STOCKML_AUTH__API_KEYS",
        "STOCKML_OIDC_ISSUER": "STOCKML_AUTH__OIDC_ISSUER",
    }
    table = settings_table()
    assert all(f"`{new}`" in table for new in RENAMED.values())  # every old name maps to a real setting


def test_registry_http_policy_is_short_unless_the_operator_set_mlflows_own():
    """The service's MLflow requests give up fast when the server is down (the fault test in
    tests/system/test_serving_mlflow_server.py relies on it); an explicit MLFLOW_HTTP_REQUEST_* wins."""
    from stockml.settings_serving import ServingSettings, apply_registry_http_policy

    env: dict[str, str] = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}
    got = apply_registry_http_policy(ServingSettings(registry_retries=1, registry_timeout_s=5), env)
    assert (
        got
        == env
        == {
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        }
    )
