"""OIDC / JWT bearer tokens through the real auth middleware (Starlette app, no server, no network):
an RSA key pair made here, its JWKS in a file, tokens minted with PyJWT."""

from __future__ import annotations

import json
import os
import time

import jwt
import pytest
from asgi_client import ASGIClient
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from serving.bentos.auth import KeyStore
from serving.bentos.middleware import ApiKeyMiddleware, oidc_from_settings
from serving.bentos.oidc import OidcConfigError, OidcSettings, OidcVerifier, TokenRejected, looks_like_jwt, roles_of
from stockml.settings import Settings

ISS = "https://sso.example.test/realms/stockml"
AUD = "stockml-api"


async def _echo(request: Request) -> JSONResponse:
    key = request.scope.get("state", {}).get("api_key")
    return JSONResponse({"role": key.role if key else None, "key_id": key.key_id if key else None})


_Client = ASGIClient


def _rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys():
    return {"good": _rsa(), "other": _rsa()}


@pytest.fixture
def jwks_file(tmp_path, keys):
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["good"].public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps({"keys": [jwk]}))
    return f


def _token(key, kid="k1", roles=("stockml-user",), alg="RS256", **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": AUD, "sub": "alice", "iat": now, "nbf": now, "exp": now + 300}
    if roles is not None:
        payload["realm_access"] = {"roles": list(roles)}
    payload.update(claims)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def _app(jwks_file, rate: float = 1000, **settings) -> _Client:
    routes = [Route(p, _echo, methods=["GET", "POST"]) for p in ("/forecast", "/admin/reload", "/readyz")]
    verifier = OidcVerifier(OidcSettings(ISS, AUD, jwks_file.as_uri(), **settings))
    mw = ApiKeyMiddleware(
        Starlette(routes=routes), KeyStore("u:user"), rate_limit_per_s=rate, disabled=False, oidc=verifier
    )
    return _Client(mw)


def _post(c: _Client, path: str, token: str):
    return c.post(path, headers={"Authorization": f"Bearer {token}"})


def test_valid_tokens_get_their_role(jwks_file, keys):
    c = _app(jwks_file)
    user = _token(keys["good"])
    r = _post(c, "/forecast", user)
    assert r.status_code == 200 and r.json()["role"] == "user" and r.json()["key_id"].startswith("oidc:")
    assert _post(c, "/admin/reload", user).status_code == 403
    admin = _token(keys["good"], roles=("stockml-admin", "offline_access"))
    r = _post(c, "/admin/reload", admin)
    assert r.status_code == 200 and r.json()["role"] == "admin"
    assert _post(c, "/forecast", "u").status_code == 200  # API keys unchanged
    assert c.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("expired", "expired"),
        ("issuer", "wrong issuer"),
        ("audience", "wrong audience"),
        ("unknown_kid", "unknown signing key"),
        ("bad_signature", "bad signature"),
        ("alg_none", "algorithm not allowed"),
        ("hs256", "algorithm not allowed"),
        ("not_yet", "not yet valid"),
        ("no_sub", "'sub'"),
    ],
)
def test_invalid_tokens_get_401(jwks_file, keys, case, reason):
    good, other, now = keys["good"], keys["other"], int(time.time())
    token = {
        "expired": lambda: _token(good, exp=now - 300, iat=now - 900, nbf=now - 900),
        "issuer": lambda: _token(good, iss="https://evil.example.test/realms/stockml"),
        "audience": lambda: _token(good, aud="another-api"),
        "unknown_kid": lambda: _token(other, kid="k2"),
        "bad_signature": lambda: _token(other),  # kid k1, signed by another key
        "alg_none": lambda: jwt.encode({"iss": ISS, "aud": AUD, "sub": "x", "exp": now + 300}, None, algorithm="none"),
        "hs256": lambda: _token("a-shared-secret-of-32-bytes-or-more!!", alg="HS256"),
        "not_yet": lambda: _token(good, nbf=now + 600),
        "no_sub": lambda: _token(good, sub=None),
    }[case]()
    if case == "no_sub":  # PyJWT would keep a None sub; mint one without it
        payload = jwt.decode(token, options={"verify_signature": False})
        payload.pop("sub")
        token = jwt.encode(payload, good, algorithm="RS256", headers={"kid": "k1"})
    r = _post(_app(jwks_file), "/forecast", token)
    assert r.status_code == 401, r.text
    assert reason in r.json()["error"] and "Traceback" not in r.text
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_missing_or_foreign_roles_get_403(jwks_file, keys):
    c = _app(jwks_file)
    for token in (_token(keys["good"], roles=None), _token(keys["good"], roles=("offline_access",))):
        r = _post(c, "/forecast", token)
        assert r.status_code == 403 and "stockml-user" in r.json()["error"]


def test_custom_roles_claim_and_rate_limit_per_subject(jwks_file, keys):
    c = _app(jwks_file, rate=1, roles_claim="resource_access.stockml.roles", user_role="reader")
    alice = _token(keys["good"], roles=None, resource_access={"stockml": {"roles": ["reader"]}})
    codes = [_post(c, "/forecast", alice).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]  # burst 2 x 1/s for sub "alice"
    bob = _token(keys["good"], roles=None, sub="bob", resource_access={"stockml": {"roles": ["reader"]}})
    assert _post(c, "/forecast", bob).status_code == 200


def test_jwks_file_rotation_is_picked_up(jwks_file, keys):
    c = _app(jwks_file)
    rotated = _token(keys["other"], kid="k2")
    assert _post(c, "/forecast", rotated).status_code == 401
    data = json.loads(jwks_file.read_text())
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(keys["other"].public_key()))
    data["keys"].append({**jwk, "kid": "k2", "use": "sig", "alg": "RS256"})
    jwks_file.write_text(json.dumps(data))
    os.utime(jwks_file, (time.time() + 5, time.time() + 5))
    assert _post(c, "/forecast", rotated).status_code == 200


def test_config_from_settings_and_off_by_default(monkeypatch, jwks_file, keys):
    for name in ("ISSUER", "AUDIENCE", "JWKS_URL", "ROLES_CLAIM", "ADMIN_ROLE", "USER_ROLE"):
        monkeypatch.delenv(f"STOCKML_AUTH__OIDC_{name}", raising=False)
    assert oidc_from_settings(Settings().auth) is None
    token = _token(keys["good"])
    mw = ApiKeyMiddleware(
        Starlette(routes=[Route("/forecast", _echo, methods=["POST"])]), KeyStore("u:user"), disabled=False
    )
    assert _post(_Client(mw), "/forecast", token).status_code == 401  # a JWT is just an unknown API key
    assert "invalid API key" in _post(_Client(mw), "/forecast", token).json()["error"]

    monkeypatch.setenv("STOCKML_AUTH__OIDC_ISSUER", ISS)
    monkeypatch.setenv("STOCKML_AUTH__OIDC_AUDIENCE", AUD)
    with pytest.raises(OidcConfigError):  # a partial configuration fails closed at start
        oidc_from_settings(Settings().auth)
    monkeypatch.setenv("STOCKML_AUTH__OIDC_JWKS_URL", jwks_file.as_uri())
    monkeypatch.setenv("STOCKML_AUTH__OIDC_ADMIN_ROLE", "boss")
    cfg = Settings().auth
    assert cfg.oidc_roles_claim == "realm_access.roles" and cfg.oidc_admin_role == "boss"
    mw = ApiKeyMiddleware(
        Starlette(routes=[Route("/admin/reload", _echo, methods=["POST"])]),
        KeyStore(""),
        disabled=False,
        oidc=oidc_from_settings(cfg),
    )
    assert _post(_Client(mw), "/admin/reload", _token(keys["good"], roles=("boss",))).status_code == 200
    monkeypatch.setenv("STOCKML_AUTH__OIDC_JWKS_URL", "ftp://example.test/jwks")
    with pytest.raises(OidcConfigError):
        oidc_from_settings(Settings().auth)


def test_helpers():
    assert (
        looks_like_jwt("a.b.c") and looks_like_jwt("a.b.") and not looks_like_jwt("key") and not looks_like_jwt("a.b")
    )
    assert roles_of({"realm_access": {"roles": ["x", 1]}}, "realm_access.roles") == {"x"}
    assert roles_of({"scope": "openid stockml-user"}, "scope") == {"openid", "stockml-user"}
    assert roles_of({"realm_access": "nope"}, "realm_access.roles") == set()


def test_http_jwks_rotation_by_kid_refuses_a_withdrawn_key(keys):
    """The verifier against a JWKS served over HTTP (a local server thread): a new kid is fetched once the
    least refresh interval has passed, and the refetched set replaces the old one, so a withdrawn kid is
    refused (PyJWKClient's per-kid LRU, which kept it, is not used)."""
    from jwks_server import JwksServer

    server = JwksServer()
    try:
        server.publish("k1", keys["good"], "RS256")
        verifier = OidcVerifier(OidcSettings(ISS, AUD, server.jwks_url, jwks_min_refresh_s=0.2))
        assert verifier.fetches_over_network
        old = _token(keys["good"], kid="k1")
        assert verifier.verify(old).role == "user"
        assert server.fetches == 1
        assert verifier.verify(old).role == "user" and server.fetches == 1  # the set is cached

        server.publish("k2", keys["other"], "RS256")
        server.withdraw("k1")
        time.sleep(0.3)
        assert verifier.verify(_token(keys["other"], kid="k2")).role == "user"
        assert server.fetches == 2
        with pytest.raises(TokenRejected) as rejected:
            verifier.verify(old)
        assert (rejected.value.status, rejected.value.reason) == (401, "invalid token: unknown signing key")
        # a burst of unknown kids within the interval costs the issuer no more fetches
        for n in range(5):
            with pytest.raises(TokenRejected):
                verifier.verify(_token(keys["other"], kid=f"random-{n}"))
        assert server.fetches <= 3
    finally:
        server.stop()
    time.sleep(0.3)
    with pytest.raises(TokenRejected) as down:  # unknown kid, provider gone: 503, not the caller's fault
        verifier.verify(_token(keys["other"], kid="k3"))
    assert down.value.status == 503
    assert verifier.verify(_token(keys["other"], kid="k2")).role == "user"  # cached keys still verify
