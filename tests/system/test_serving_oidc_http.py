"""System test: OIDC bearer tokens through the running service, keys served over HTTP and rotated.

A JWKS server (a thread of this test on 127.0.0.1, a free port) publishes an RSA and an EC P-256
public key as an identity provider such as Keycloak does; ``bentoml serve`` runs the production
service with ``STOCKML_AUTH__OIDC_ISSUER`` / ``_AUDIENCE`` / ``_JWKS_URL`` pointing at it. Tokens are
signed here with the private keys (PyJWT + cryptography, RS256 and ES256) and sent as bearers:

- valid tokens of both algorithms are accepted; the role claim decides user or admin (403 on an
  admin endpoint for a user, 403 without any stockml role);
- expired, wrong audience, wrong issuer and wrong signature get 401 with a short reason;
- key rotation by ``kid``: the server publishes a new key and drops the old one; a token with the
  new kid is accepted once the service has refetched the JWKS (at most
  ``STOCKML_AUTH__OIDC_JWKS_MIN_REFRESH_S`` after the last fetch), one with the removed kid is refused;
- the identity provider down: tokens with a kid already fetched still pass (the key set is cached),
  a token with an unknown kid gets 503, not a 401 blaming the caller.

No fake: the real service, a real HTTP JWKS endpoint, real signatures. Only the identity provider
is reduced to its JWKS document (a Keycloak server does not run on this machine).
"""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwks_server import JwksServer
from serving_helpers import (
    START_TIMEOUT_S,
    bentoml_serve,
    champion_registry,
    service_env,
    wait_ready,
)

pytestmark = pytest.mark.slow

EXPERIMENT = "stockml-router-oidc-test"
AUDIENCE = "stockml-api"
MIN_REFRESH_S = 1.0


@pytest.fixture(scope="module")
def idp():
    server = JwksServer()
    keys = {
        "rsa-1": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        "rsa-2": (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        "ec-1": (ec.generate_private_key(ec.SECP256R1()), "ES256"),
    }
    server.publish("rsa-1", *keys["rsa-1"])
    server.publish("ec-1", *keys["ec-1"])  # rsa-2 is published later, by the rotation
    yield {"server": server, "keys": keys, "issuer": f"{server.url}/realms/stockml"}
    server.stop()


@pytest.fixture(scope="module")
def service(router_data, tmp_path_factory, idp):
    tmp = tmp_path_factory.mktemp("oidc-serving")
    with champion_registry(router_data, tmp, EXPERIMENT) as uri:
        yield from _serve(tmp, uri, idp)


def _serve(tmp, uri: str, idp: dict):
    """`bentoml serve` on the registry `uri`, taking only tokens from the test's identity provider."""
    env = service_env(
        tmp,
        uri,
        "",  # no API keys: only tokens get in
        STOCKML_SERVING__POLL_S="0",
        STOCKML_AUTH__OIDC_ISSUER=idp["issuer"],
        STOCKML_AUTH__OIDC_AUDIENCE=AUDIENCE,
        STOCKML_AUTH__OIDC_JWKS_URL=idp["server"].jwks_url,
        STOCKML_AUTH__OIDC_JWKS_MIN_REFRESH_S=str(MIN_REFRESH_S),
    )
    log_path = tmp / "bentoml-serve.log"
    with bentoml_serve(env, log_path) as (proc, url):
        wait_ready(url, proc, log_path, timeout=START_TIMEOUT_S)
        yield {"url": url, "log": log_path}


def token(idp: dict, kid: str, *, roles=("stockml-user",), signer: str | None = None, **claims) -> str:
    """A token as the identity provider would sign it (``signer``: sign with another kid's private key)."""
    key, alg = idp["keys"][signer or kid]
    now = int(time.time())
    body = {
        "iss": idp["issuer"],
        "aud": AUDIENCE,
        "sub": "user-42",
        "iat": now,
        "exp": now + 300,
        "realm_access": {"roles": list(roles)},
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def call(service: dict, bearer: str, path: str = "/model_info") -> httpx.Response:
    return httpx.post(f"{service['url']}{path}", json={}, headers={"Authorization": f"Bearer {bearer}"}, timeout=60)


def test_rs256_and_es256_tokens_are_accepted_with_their_roles(service, idp):
    for kid in ("rsa-1", "ec-1"):
        r = call(service, token(idp, kid))
        assert r.status_code == 200, (kid, r.status_code, r.text[:300])
        assert r.json()["ready"] is True
        r = call(service, token(idp, kid), "/admin/reload")
        assert r.status_code == 403 and "admin" in r.json()["error"], r.text[:300]
        r = call(service, token(idp, kid, roles=("stockml-admin",)), "/admin/reload")
        assert r.status_code == 200, (kid, r.status_code, r.text[:300])
    assert idp["server"].fetches >= 1  # the keys came over HTTP


BAD = [
    ("expired", {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, None, 401, "invalid token: expired"),
    ("wrong audience", {"aud": "another-api"}, None, 401, "invalid token: wrong audience"),
    ("wrong issuer", {"iss": "http://127.0.0.1:1/realms/evil"}, None, 401, "invalid token: wrong issuer"),
    ("wrong signature", {}, "rsa-2", 401, "invalid token: bad signature"),  # signed by a key not behind rsa-1
    ("no stockml role", {"realm_access": {"roles": ["offline_access"]}}, None, 403, "neither role"),
]


@pytest.mark.parametrize(("case", "claims", "signer", "status", "reason"), BAD, ids=[b[0] for b in BAD])
def test_bad_tokens_get_401_or_403_with_a_short_reason(service, idp, case, claims, signer, status, reason):
    r = call(service, token(idp, "rsa-1", signer=signer, **claims))
    assert r.status_code == status, (case, r.status_code, r.text[:300])
    assert reason in r.json()["error"], r.json()
    assert len(r.json()["error"]) < 120
    if status == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_key_rotation_by_kid(service, idp):
    server = idp["server"]
    old = token(idp, "rsa-1")
    assert call(service, old).status_code == 200
    server.publish("rsa-2", *idp["keys"]["rsa-2"])
    server.withdraw("rsa-1")
    fetches = server.fetches
    time.sleep(MIN_REFRESH_S + 0.5)  # past the least interval between two fetches: the next unknown kid refetches
    r = call(service, token(idp, "rsa-2"))
    assert r.status_code == 200, r.text[:300]
    assert server.fetches == fetches + 1  # the new kid made the service fetch the JWKS again, once
    r = call(service, old)  # a token that was fine a moment ago, signed with the key now withdrawn
    assert r.status_code == 401 and r.json()["error"] == "invalid token: unknown signing key", r.text[:300]
    assert call(service, token(idp, "ec-1")).status_code == 200  # the key that stayed still works


def test_identity_provider_down(service, idp):
    server = idp["server"]
    server.stop()
    # a kid from the key set fetched before: verified from the cached set, without the provider
    assert call(service, token(idp, "ec-1")).status_code == 200
    time.sleep(MIN_REFRESH_S + 0.5)
    r = call(service, token(idp, "rsa-1", signer="rsa-1"))  # unknown kid now: a refetch is needed and fails
    assert r.status_code == 503, r.text[:300]
    assert r.json()["error"] == "identity provider keys unavailable"
    log = service["log"].read_text(errors="replace")
    assert "cannot fetch the OIDC JWKS" in log and "Traceback" not in log
