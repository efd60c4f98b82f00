"""Serving knobs, read from ``STOCKML_*`` environment variables.

Phase 1 reads these directly here; they are candidates for :class:`stockml.settings.Settings`
(same names without the ``STOCKML_`` prefix). Where the MLflow registry is comes from the
stockml settings (``STOCKML_HOME`` / ``STOCKML_MLFLOW_TRACKING_URI``), as everywhere else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from training.registry.mlflow_registry import MODEL_NAME


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc


def _env_int(name: str, default: int) -> int:
    return int(_env_float(name, default))


def _env_str(name: str) -> str | None:
    return os.environ.get(name, "").strip() or None


def _env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    return raw in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ServingConfig:
    model_name: str = MODEL_NAME
    poll_s: float = 30.0  # 0: no background poll (POST /admin/reload only)
    rate_limit_per_s: float = 50.0  # per API key; burst = 2 x rate
    max_body_bytes: int = 16 * 1024 * 1024
    cache_size: int = 10_000  # in-process LRU entries (one per SKU forecast)
    cache_ttl_s: int = 3600  # Redis entry lifetime
    redis_url: str | None = None
    auth_disabled: bool = False
    # OIDC bearer tokens (on when issuer, audience and JWKS URL are all set; see oidc.py)
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None  # http(s):// or file:///path/to/jwks.json
    oidc_roles_claim: str = "realm_access.roles"  # dotted path (Keycloak realm roles)
    oidc_admin_role: str = "stockml-admin"
    oidc_user_role: str = "stockml-user"

    @property
    def oidc_enabled(self) -> bool:
        return any((self.oidc_issuer, self.oidc_audience, self.oidc_jwks_url))

    @classmethod
    def from_env(cls) -> ServingConfig:
        return cls(
            model_name=os.environ.get("STOCKML_SERVING_MODEL_NAME", "").strip() or MODEL_NAME,
            poll_s=max(0.0, _env_float("STOCKML_SERVING_POLL_S", cls.poll_s)),
            rate_limit_per_s=_env_float("STOCKML_RATE_LIMIT_PER_S", cls.rate_limit_per_s),
            max_body_bytes=_env_int("STOCKML_SERVING_MAX_BODY_BYTES", cls.max_body_bytes),
            cache_size=_env_int("STOCKML_SERVING_CACHE_SIZE", cls.cache_size),
            cache_ttl_s=_env_int("STOCKML_SERVING_CACHE_TTL_S", cls.cache_ttl_s),
            redis_url=os.environ.get("STOCKML_REDIS_URL", "").strip() or None,
            auth_disabled=_env_bool("STOCKML_AUTH_DISABLED"),
            oidc_issuer=_env_str("STOCKML_OIDC_ISSUER"),
            oidc_audience=_env_str("STOCKML_OIDC_AUDIENCE"),
            oidc_jwks_url=_env_str("STOCKML_OIDC_JWKS_URL"),
            oidc_roles_claim=_env_str("STOCKML_OIDC_ROLES_CLAIM") or cls.oidc_roles_claim,
            oidc_admin_role=_env_str("STOCKML_OIDC_ADMIN_ROLE") or cls.oidc_admin_role,
            oidc_user_role=_env_str("STOCKML_OIDC_USER_ROLE") or cls.oidc_user_role,
        )
