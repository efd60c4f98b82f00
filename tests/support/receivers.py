"""Local receivers for the alert and callback tests: an HTTP server and an SMTP server, each in a thread.

:func:`http_receiver` records every request (path, headers, body bytes) and answers from a script of
status codes (``[503, 503, 200]``: fail twice, then accept; the last code repeats). :func:`smtp_server`
is aiosmtpd's real SMTP server (``aiosmtpd.controller.Controller``) on a free port, keeping each
message as an :class:`email.message.EmailMessage` with the envelope it came with. Nothing is mocked:
the code under test opens real sockets to them. Given a server TLS context (``tests/support/tls.py``:
a private CA's certificate), the HTTP receiver speaks https, and the SMTP server requires STARTTLS
(or, with ``implicit_tls``, speaks SMTPS from the first byte).
"""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _wait(items: list, n: int, timeout: float, what: str) -> list:
    """A copy of ``items`` once it holds ``n`` (it is appended to by the server thread)."""
    deadline = time.monotonic() + timeout
    while len(items) < n:
        assert time.monotonic() < deadline, f"{len(items)} {what} arrived, expected {n}"
        time.sleep(0.02)
    return list(items)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpReceiver:
    url: str
    statuses: list[int]
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return int(self.url.split(":")[2].split("/")[0])

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>`` (the receiver answers every path)."""
        return self.url.rsplit("/", 1)[0]

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Received]:
        return _wait(self.requests, n, timeout, "request(s)")


@contextmanager
def http_receiver(
    statuses: list[int] | None = None, path: str = "/hook", tls: ssl.SSLContext | None = None
) -> Iterator[HttpReceiver]:
    """A receiver at ``http://127.0.0.1:<free port><path>`` answering ``statuses`` in turn (default 200);
    with ``tls`` (a server context) at ``https://``: a client that does not trust the certificate ends
    the handshake, and the request never reaches the handler (nothing is recorded)."""
    state = HttpReceiver(url="", statuses=list(statuses or [200]))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with state.lock:
                state.requests.append(Received("POST", self.path, dict(self.headers.items()), body))
                n = len(state.requests)
            code = state.statuses[min(n, len(state.statuses)) - 1]
            payload = b'{"ok": true}' if code < 300 else b'{"error": "try later"}'
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:  # the handshake runs at accept(); a refused one is an OSError socketserver drops
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.EmailMessage


@dataclass
class SmtpReceiver:
    host: str
    port: int
    messages: list[Mail] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)  # the users that authenticated

    def wait_for(self, n: int, timeout: float = 30.0) -> list[Mail]:
        return _wait(self.messages, n, timeout, "mail(s)")


@contextmanager
def smtp_server(
    login: tuple[str, str] | None = None, tls: ssl.SSLContext | None = None, implicit_tls: bool = False
) -> Iterator[SmtpReceiver]:
    """aiosmtpd's SMTP server on 127.0.0.1 and a free port: plain SMTP; with ``login`` (user, password) it
    requires AUTH (LOGIN/PLAIN, allowed without TLS here). With ``tls`` (a server context) it offers
    STARTTLS and refuses mail before it (``require_starttls``); with ``implicit_tls`` too, it is SMTPS."""
    import socket

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    state = SmtpReceiver("127.0.0.1", port)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            state.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
            return "250 Message accepted for delivery"

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = login is not None and (user, password) == login
        if ok:
            state.logins.append(user)
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself

    options: dict[str, Any] = (
        {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True} if login else {}
    )
    if tls is not None and implicit_tls:
        options["ssl_context"] = tls
    elif tls is not None:
        options |= {"tls_context": tls, "require_starttls": True}
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()
