"""An identity provider reduced to its JWKS document: an HTTP server thread on 127.0.0.1 (free port).

Publishes public keys under Keycloak's path (``/realms/<realm>/protocol/openid-connect/certs``),
lets a test rotate them (publish a new ``kid``, drop an old one) and counts the fetches, so a test
can tell when the service refetched the key set. Used by the OIDC tests in process and through
``bentoml serve``; a Keycloak server does not run on this machine.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt


class JwksServer:
    """Serves ``/realms/stockml/protocol/openid-connect/certs`` (Keycloak's JWKS path) and counts fetches."""

    path = "/realms/stockml/protocol/openid-connect/certs"

    def __init__(self) -> None:
        self.keys: dict[str, dict] = {}  # kid -> public JWK
        self.fetches = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != outer.path:
                    self.send_error(404)
                    return
                with outer._lock:
                    outer.fetches += 1
                    body = json.dumps({"keys": list(outer.keys.values())}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def jwks_url(self) -> str:
        return self.url + self.path

    def publish(self, kid: str, private_key, alg: str) -> None:
        """Publish the public half of ``private_key`` (RSA for RS256, EC P-256 for ES256) under ``kid``."""
        algo = jwt.algorithms.RSAAlgorithm if alg == "RS256" else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algo.to_jwk(private_key.public_key()))
        with self._lock:
            self.keys[kid] = {**jwk, "kid": kid, "use": "sig", "alg": alg}

    def withdraw(self, kid: str) -> None:
        """Stop publishing ``kid`` (as an issuer does once its tokens have expired)."""
        with self._lock:
            del self.keys[kid]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
