"""Optional OIDC / JWT bearer tokens (e.g. Keycloak access tokens) next to the API keys.

Enabled when ``STOCKML_AUTH__OIDC_ISSUER``, ``STOCKML_AUTH__OIDC_AUDIENCE`` and ``STOCKML_AUTH__OIDC_JWKS_URL`` are
set (the ``auth`` section of :class:`stockml.settings.Settings`). A token is verified with the issuer's
public keys (JWKS over http(s) through :class:`jwt.PyJWKClient`, which caches the key set for
``STOCKML_AUTH__OIDC_JWKS_TTL_S`` and refetches it on an unknown ``kid``, at most once per
``STOCKML_AUTH__OIDC_JWKS_MIN_REFRESH_S``: rotation by ``kid``, a removed key is refused once the set
is refetched; or a ``file://`` JWKS read from disk and re-read when it changes), RS256 or
ES256 only; signature, ``exp``, ``nbf``, ``iss`` and ``aud`` are checked, ``sub`` is required.
The role comes from the roles claim (a dotted path, Keycloak's ``realm_access.roles`` by default):
the admin role gives ``admin``, the user role ``user``, neither is a 403.

The verified token becomes an :class:`~serving.bentos.auth.ApiKey` whose ``key_id`` is
``oidc:<first 12 hex of sha256(sub)>``, so rate limits apply per subject and logs carry no token.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import jwt

from serving.bentos.auth import ApiKey

log = logging.getLogger("stockml.serving.oidc")

ALGORITHMS = ("RS256", "ES256")  # never "none" nor HS*: the keys are public
LEEWAY_S = 30  # clock skew allowed on exp / nbf / iat


class OidcConfigError(ValueError):
    """The OIDC settings are incomplete or the JWKS cannot be loaded at start."""


class TokenRejected(Exception):
    """The token is not accepted; ``status`` is the HTTP answer (401, 403 or 503), ``reason`` a short text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    jwks_url: str
    roles_claim: str = "realm_access.roles"
    admin_role: str = "stockml-admin"
    user_role: str = "stockml-user"
    jwks_ttl_s: float = 300.0  # http(s): a fetched key set is used this long, then fetched again
    jwks_min_refresh_s: float = 30.0  # http(s): least time between fetches forced by an unknown kid


def looks_like_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and all(parts[:2])


def claim_at(claims: dict, path: str) -> object:
    """The value at a dotted path (``realm_access.roles``), None where a step is missing."""
    value: object = claims
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def roles_of(claims: dict, path: str) -> set[str]:
    value = claim_at(claims, path)
    if isinstance(value, str):  # e.g. a space-separated "scope"
        return set(value.split())
    if isinstance(value, list | tuple):
        return {v for v in value if isinstance(v, str)}
    return set()


class _FileJwks:
    """A JWKS JSON file, re-read when its mtime changes (checked on an unknown ``kid``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime: float | None = None
        self._set: jwt.PyJWKSet | None = None
        self._lock = threading.Lock()
        try:
            self._load()
        except (OSError, ValueError, jwt.PyJWTError) as exc:
            raise OidcConfigError(f"STOCKML_AUTH__OIDC_JWKS_URL file {path} cannot be loaded: {exc}") from exc

    def _load(self) -> None:
        mtime = self.path.stat().st_mtime
        if mtime == self._mtime:
            return
        keys = jwt.PyJWKSet.from_json(self.path.read_text())
        with self._lock:
            self._set, self._mtime = keys, mtime
        log.info("loaded %d JWKS key(s) from %s", len(keys.keys), self.path)

    def key_for(self, kid: str | None) -> jwt.PyJWK:
        for attempt in range(2):
            assert self._set is not None
            keys = [k for k in self._set.keys if k.public_key_use in ("sig", None)]
            match = [k for k in keys if k.key_id == kid] if kid else (keys if len(keys) == 1 else [])
            if match:
                return match[0]
            if attempt == 0:
                try:
                    self._load()
                except (OSError, ValueError, jwt.PyJWTError) as exc:
                    log.warning("JWKS file %s cannot be re-read (%s); keeping the keys loaded", self.path, exc)
        raise TokenRejected(401, "invalid token: unknown signing key")


class OidcVerifier:
    """Verifies bearer JWTs against the issuer's JWKS and maps them to a role."""

    def __init__(self, settings: OidcSettings, jwks_timeout_s: float = 5.0) -> None:
        if not (settings.issuer and settings.audience and settings.jwks_url):
            raise OidcConfigError(
                "OIDC needs STOCKML_AUTH__OIDC_ISSUER, STOCKML_AUTH__OIDC_AUDIENCE and STOCKML_AUTH__OIDC_JWKS_URL"
            )
        self.settings = settings
        url = urlparse(settings.jwks_url)
        self._file: _FileJwks | None = None
        self._client: jwt.PyJWKClient | None = None
        if url.scheme == "file":
            self._file = _FileJwks(Path(unquote(url.path)))
        elif url.scheme in ("http", "https"):
            # No per-kid LRU (cache_keys): it would keep accepting a kid the issuer has removed. The key
            # set alone is cached; a token with an unknown kid refetches it (at most once per
            # jwks_min_refresh_s, so random kids cannot hammer the issuer), and the refetched set
            # replaces the old one: a new kid is accepted, a removed one refused.
            self._client = jwt.PyJWKClient(
                settings.jwks_url,
                cache_keys=False,
                lifespan=settings.jwks_ttl_s,
                cooldown_duration=settings.jwks_min_refresh_s,
                timeout=jwks_timeout_s,
            )
        else:
            raise OidcConfigError("STOCKML_AUTH__OIDC_JWKS_URL must be an http(s):// URL or a file:// path")

    @property
    def fetches_over_network(self) -> bool:
        return self._client is not None

    def _signing_key(self, token: str) -> jwt.PyJWK:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected(401, "invalid token: malformed") from None
        if header.get("alg") not in ALGORITHMS:
            raise TokenRejected(401, "invalid token: algorithm not allowed")
        kid = header.get("kid")
        if self._file is not None:
            return self._file.key_for(kid)
        assert self._client is not None
        if not kid:
            raise TokenRejected(401, "invalid token: no kid")
        try:
            return self._client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            log.error("cannot fetch the OIDC JWKS from %s: %s", self.settings.jwks_url, exc)
            raise TokenRejected(503, "identity provider keys unavailable") from None
        except jwt.PyJWKClientError:
            raise TokenRejected(401, "invalid token: unknown signing key") from None

    def verify(self, token: str) -> ApiKey:
        """The principal of a valid token; raises :class:`TokenRejected` otherwise (never a traceback)."""
        key = self._signing_key(token)
        algorithms = [a for a in ALGORITHMS if a == key.algorithm_name]
        if not algorithms:
            raise TokenRejected(401, "invalid token: signing key algorithm not allowed")
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=algorithms,
                audience=s.audience,
                issuer=s.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected(401, "invalid token: expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected(401, "invalid token: not yet valid") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected(401, "invalid token: wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(401, "invalid token: wrong audience") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected(401, "invalid token: bad signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(401, f"invalid token: no {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise TokenRejected(401, "invalid token") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenRejected(401, "invalid token: no 'sub' claim")
        roles = roles_of(claims, s.roles_claim)
        role = "admin" if s.admin_role in roles else "user" if s.user_role in roles else None
        if role is None:
            raise TokenRejected(403, f"token has neither role {s.user_role!r} nor {s.admin_role!r}")
        return ApiKey("oidc:" + hashlib.sha256(sub.encode("utf-8")).hexdigest()[:12], role)
