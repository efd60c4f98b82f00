"""The serving sections of :class:`stockml.settings.Settings`: ``serving``, ``auth``, ``bandit``, ``batch``,
``notify``.

Each is a plain pydantic model nested in the one settings object, so its fields are read from
``STOCKML_<SECTION>__<FIELD>`` environment variables (``env_nested_delimiter="__"``), for example
``STOCKML_SERVING__POLL_S=0`` or ``STOCKML_AUTH__API_KEYS_FILE=/run/secrets/keys``. The service
builds the settings once at start-up and hands these values down; nothing in ``serving/`` reads
the environment itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


def _blank_is_none(v: object) -> object:
    """``VAR=`` (set but empty) means unset, as it did before the settings object."""
    return None if isinstance(v, str) and not v.strip() else v


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServingSettings(_Section):
    """The HTTP service: which model, how it follows the registry, caches, limits, its database."""

    model_name: str | None = Field(
        default=None,
        min_length=1,
        description="Registered model to serve (default: the router's registry name, stockml-router).",
    )
    poll_s: float = Field(
        default=30.0, ge=0, description="Seconds between registry alias checks (0: only POST /admin/reload)."
    )
    registry_retries: int = Field(
        default=2,
        ge=0,
        description="Retries of one MLflow server request by the service (MLflow's own default, 7 with back-off, "
        "holds a registry check for minutes while the server is down).",
    )
    registry_timeout_s: int = Field(
        default=15, ge=1, description="Timeout of one MLflow server request by the service (MLflow's default: 120)."
    )
    max_body_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1024, description="Largest JSON request body; larger ones get 413."
    )
    cache_size: int = Field(default=10_000, ge=0, description="In-process LRU forecast cache entries (one per SKU).")
    cache_ttl_s: int = Field(default=3600, ge=1, description="Lifetime of a forecast in the Redis cache.")
    redis_url: str | None = Field(
        default=None,
        description="Redis URL: forecast cache and per-key rate limits shared by all workers (unset: per worker).",
    )
    redis_retry_s: float = Field(
        default=30.0,
        gt=0,
        description="After a Redis error, seconds a worker uses its in-process cache and rate limits before "
        "trying Redis again.",
    )
    workers: int = Field(
        default=1,
        ge=1,
        description="Worker processes of the service; with more than one, set REDIS_URL so that they share "
        "the cache and the rate limits.",
    )
    db_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the outcome store (served forecasts, feedback; "
        "default sqlite:///$STOCKML_HOME/serving.db; Postgres works).",
    )
    record_flush_s: float = Field(
        default=0.2,
        ge=0,
        description="How often served-forecast records are folded from the write-ahead log into the outcome "
        "store (0: written to the store before each answer, no log).",
    )
    record_log_dir: Path | None = Field(
        default=None,
        description="Write-ahead log of served-forecast records, appended before each answer "
        "(default $STOCKML_HOME/serving_records).",
    )
    record_fsync: bool = Field(
        default=False,
        description="fsync the write-ahead log before each answer: survives a power loss, not just a killed "
        "process, at a disk flush per request.",
    )

    _blank = field_validator("model_name", "redis_url", "db_url", mode="before")(_blank_is_none)


class AuthSettings(_Section):
    """Who may call the service: API keys, OIDC bearer tokens, rate limits."""

    disabled: bool = Field(default=False, description="Open every endpoint, without keys or rate limits (dev only).")
    api_keys: str = Field(
        default="",
        description="Comma-separated key:role[:rate] entries (role user or admin; rate in requests/s).",
    )
    api_keys_file: Path | None = Field(
        default=None, description="File of key:role[:rate] lines, re-read when it changes."
    )
    rate_limit_per_s: float = Field(default=50.0, gt=0, description="Requests/s per key without its own rate.")
    oidc_issuer: str | None = Field(default=None, description="OIDC issuer (with audience and JWKS URL: OIDC on).")
    oidc_audience: str | None = Field(default=None, description="Audience the tokens must carry.")
    oidc_jwks_url: str | None = Field(
        default=None, description="JWKS location: http(s):// or file:///path/to/jwks.json."
    )
    oidc_jwks_ttl_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a fetched JWKS is used before it is fetched again (a key removed from the JWKS "
        "is refused after this at the latest).",
    )
    oidc_jwks_min_refresh_s: float = Field(
        default=30.0,
        ge=0,
        description="Least seconds between two JWKS fetches that a token with an unknown kid triggers "
        "(a key published under a new kid is accepted after this at the latest).",
    )
    oidc_roles_claim: str = Field(
        default="realm_access.roles", min_length=1, description="Dotted path of the roles claim (Keycloak)."
    )
    oidc_admin_role: str = Field(default="stockml-admin", min_length=1, description="Role of admin callers.")
    oidc_user_role: str = Field(default="stockml-user", min_length=1, description="Role of user callers.")

    _blank = field_validator("api_keys_file", "oidc_issuer", "oidc_audience", "oidc_jwks_url", mode="before")(
        _blank_is_none
    )

    @property
    def oidc_enabled(self) -> bool:
        return any((self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url))


class BanditSettings(_Section):
    """Champion/challenger traffic by Thompson sampling and when it decides."""

    min_outcomes: int = Field(default=200, ge=1, description="Challenger outcomes before promotion is considered.")
    min_stop_outcomes: int | None = Field(
        default=None, ge=1, description="Challenger outcomes before it may be stopped (default: min_outcomes / 4)."
    )
    p_promote: float = Field(
        default=0.95, gt=0.5, le=1, description="P(challenger better) at which the guardrails are asked to promote."
    )
    p_stop: float = Field(default=0.05, ge=0, lt=0.5, description="P(challenger better) below which it is stopped.")

    _blank = field_validator("min_stop_outcomes", mode="before")(_blank_is_none)


class BatchSettings(_Section):
    """Batch forecast jobs (``POST /batch``)."""

    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, description="Largest CSV upload; larger ones get 422.")
    max_skus: int = Field(default=100_000, ge=1, description="Most SKUs in one upload.")
    chunk_skus: int = Field(default=250, ge=1, description="SKUs forecast per chunk (progress is saved per chunk).")


_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?")


class NotifySettings(_Section):
    """What the service sends when a batch job ends: the job's ``callback_url`` and ``notify_email``."""

    callback_hosts: str = Field(
        default="",
        description="Comma-separated host names (host or host:port, lower case) a batch job's callback_url may "
        "name; empty: callbacks are refused (422).",
    )
    callback_secret: SecretStr | None = Field(
        default=None,
        description="Shared secret of the callbacks' HMAC-SHA256 signature (X-Stockml-Signature); needed when "
        "callback_hosts is set.",
    )
    retries: int = Field(default=3, ge=0, le=10, description="Retries of a callback or e-mail after the first try.")
    backoff_s: float = Field(
        default=2.0, ge=0, description="Seconds before the first retry, doubling for each further one."
    )
    timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one callback request or SMTP session.")
    public_url: str | None = Field(
        default=None, description="The service's base URL as callers reach it, for the result_url of a callback."
    )
    smtp_host: str | None = Field(
        default=None, description="SMTP server of the batch e-mails (with smtp_from: notify_email accepted)."
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port (587 with STARTTLS, 465 with SSL).")
    smtp_from: str | None = Field(default=None, description="Sender address of the batch e-mails.")
    smtp_user: str | None = Field(default=None, description="SMTP login (none: no AUTH).")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP session with STARTTLS.")
    smtp_ssl: bool = Field(default=False, description="SMTP over implicit TLS (SMTPS, port 465).")
    ca_bundle: str | None = Field(
        default=None,
        description="PEM file of the CA certificates the https callback receivers' and the SMTP server's "
        "(STARTTLS, SSL) certificates are checked against: a private CA (unset: the system's store; "
        "verification is never off).",
    )

    _blank = field_validator(
        "callback_secret", "public_url", "smtp_host", "smtp_from", "smtp_user", "smtp_password", "ca_bundle",
        mode="before",
    )(_blank_is_none)  # fmt: skip

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_usable(cls, v: str | None) -> str | None:
        """Checked when the settings load, so that a wrong path stops the service at its start with the
        fix, rather than failing every callback and mail of the day one by one."""
        if v is not None:
            from monitoring.delivery import CaBundleError, tls_context

            try:
                tls_context(v)
            except CaBundleError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("callback_hosts")
    @classmethod
    def _hosts(cls, v: str) -> str:
        bad = [h for h in (p.strip() for p in v.split(",")) if h and not _HOST.fullmatch(h)]
        if bad:
            raise ValueError(f"not a lower-case host or host:port: {bad}")
        return v

    @model_validator(mode="after")
    def _signed(self) -> NotifySettings:
        if self.hosts and self.callback_secret is None:
            raise ValueError("callback_hosts is set but callback_secret is not: every callback is signed")
        return self

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h.strip() for h in self.callback_hosts.split(",") if h.strip())

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_from)


SECTIONS: dict[str, type[BaseModel]] = {
    "serving": ServingSettings,
    "auth": AuthSettings,
    "bandit": BanditSettings,
    "batch": BatchSettings,
    "notify": NotifySettings,
}


RENAMED = {
    "STOCKML_SERVING_MODEL_NAME": "STOCKML_SERVING__MODEL_NAME",
    "STOCKML_SERVING_POLL_S": "STOCKML_SERVING__POLL_S",
    "STOCKML_SERVING_MAX_BODY_BYTES": "STOCKML_SERVING__MAX_BODY_BYTES",
    "STOCKML_SERVING_CACHE_SIZE": "STOCKML_SERVING__CACHE_SIZE",
    "STOCKML_SERVING_CACHE_TTL_S": "STOCKML_SERVING__CACHE_TTL_S",
    "STOCKML_REDIS_URL": "STOCKML_SERVING__REDIS_URL",
    "STOCKML_SERVING_DB_URL": "STOCKML_SERVING__DB_URL",
    "STOCKML_SERVING_RECORD_FLUSH_S": "STOCKML_SERVING__RECORD_FLUSH_S",
    "STOCKML_AUTH_DISABLED": "STOCKML_AUTH__DISABLED",
    "STOCKML_API_KEYS": "STOCKML_AUTH__API_KEYS",
    "STOCKML_API_KEYS_FILE": "STOCKML_AUTH__API_KEYS_FILE",
    "STOCKML_RATE_LIMIT_PER_S": "STOCKML_AUTH__RATE_LIMIT_PER_S",
    **{f"STOCKML_OIDC_{k}": f"STOCKML_AUTH__OIDC_{k}" for k in
       ("ISSUER", "AUDIENCE", "JWKS_URL", "ROLES_CLAIM", "ADMIN_ROLE", "USER_ROLE")},
    **{f"STOCKML_BANDIT_{k}": f"STOCKML_BANDIT__{k}" for k in
       ("MIN_OUTCOMES", "MIN_STOP_OUTCOMES", "P_PROMOTE", "P_STOP")},
    "STOCKML_SERVING_BATCH_MAX_BYTES": "STOCKML_BATCH__MAX_BYTES",
    "STOCKML_SERVING_BATCH_MAX_SKUS": "STOCKML_BATCH__MAX_SKUS",
    "STOCKML_SERVING_BATCH_CHUNK": "STOCKML_BATCH__CHUNK_SKUS",
}  # fmt: skip  # the variables before the settings sections (no longer read) -> their new names


def renamed_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The old serving variables set in ``environ`` (default: the process environment), each with the name
    that replaced it: they are not read any more, so the service warns about them at start-up."""
    env = os.environ if environ is None else environ
    return {old: new for old, new in RENAMED.items() if old in env}


def apply_registry_http_policy(
    serving: ServingSettings, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """Set MLflow's HTTP retry and timeout variables of this process from ``serving`` (unless already set);
    returns what is in effect.

    MLflow reads them from the environment at each request, and with its defaults (7 retries, back-off
    factor 2, 120 s timeout) one alias check against a dead ``mlflow server`` blocks for minutes: the service
    would not report the outage in ``/model_info`` and ``/admin/reload`` would hang. An operator's explicit
    ``MLFLOW_HTTP_REQUEST_*`` wins."""
    env = os.environ if environ is None else environ
    wanted = {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(serving.registry_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(serving.registry_timeout_s),
    }
    return {k: env.setdefault(k, v) for k, v in wanted.items()}
