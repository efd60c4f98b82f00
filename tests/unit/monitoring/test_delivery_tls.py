"""monitoring.delivery over TLS with a private CA: an https receiver, SMTP with STARTTLS and SMTPS.

The CA and the server certificate (127.0.0.1, localhost) are made in the test (``tests/support/tls.py``,
with ``cryptography``); the receivers are a real ``http.server`` wrapped in TLS and aiosmtpd's SMTP server
with its own TLS context. Given the CA as ``ca_bundle`` the message arrives exactly as sent; without it
the delivery fails with a certificate error in words, nothing is retried and nothing arrives.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from receivers import http_receiver, smtp_server
from tls import private_ca

from monitoring.alerts import Alert
from monitoring.delivery import SIGNATURE_HEADER, SmtpServer, post_json, send_email, sign, tls_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return private_ca(tmp_path_factory.mktemp("pki"))


def _message():
    alert = Alert(kind="drift", title="stockml: drift over TLS", text="Drift: 1 of 5 features drifted")
    return alert.email("stockml@example.org", ["ops@example.org"])


def test_an_https_webhook_with_the_private_ca_gets_exactly_the_signed_body(pki):
    body = json.dumps({"text": "hello over TLS"}, separators=(",", ":")).encode()
    headers = {SIGNATURE_HEADER: sign("s3cret", body)}
    with http_receiver(tls=pki.server_context()) as rx:
        assert rx.url.startswith("https://127.0.0.1:")
        d = post_json(rx.url, body, headers, ca_bundle=pki.ca, retries=0)
        got = rx.wait_for(1)
    assert d.ok and d.status == 200 and d.attempts == 1 and d.error is None, d
    assert got[0].body == body and got[0].headers[SIGNATURE_HEADER] == sign("s3cret", body)


def test_an_https_webhook_without_the_ca_fails_on_the_certificate_and_nothing_arrives(pki):
    with http_receiver(tls=pki.server_context()) as rx:
        d = post_json(rx.url, b"{}", retries=3, backoff_s=0)  # the system's store: it never signed this server
        arrived = list(rx.requests)
    assert not d.ok and d.status is None and arrived == []
    assert d.attempts == 1  # a certificate is configuration: no retry
    assert d.error.startswith(f"TLS certificate of 127.0.0.1:{rx.port} not trusted: ")
    assert "unable to get local issuer certificate" in d.error and "ca_bundle" in d.error, d.error


def test_a_ca_bundle_that_is_not_a_certificate_is_a_clear_failed_delivery(pki, tmp_path):
    missing = post_json("https://127.0.0.1:9/hook", b"{}", ca_bundle=tmp_path / "nope.pem")
    assert not missing.ok and missing.attempts == 0 and "is not a file" in missing.error
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    bad = send_email(_message(), SmtpServer("127.0.0.1", 9, starttls=True, ca_bundle=str(junk)))
    assert not bad.ok and bad.attempts == 0 and "holds no usable PEM certificate" in bad.error
    with pytest.raises(ValueError, match="is not a file"):
        tls_context(tmp_path / "nope.pem")
    context = tls_context(pki.ca)  # verification is on whatever the bundle
    assert context.check_hostname and context.verify_mode.name == "CERT_REQUIRED"


def test_starttls_with_the_private_ca_delivers_and_without_it_fails_clearly(pki):
    with smtp_server(tls=pki.server_context()) as smtp:
        server = SmtpServer(smtp.host, smtp.port, starttls=True, timeout_s=5)
        refused = send_email(_message(), server, retries=2, backoff_s=0)
        delivered = send_email(_message(), dataclasses.replace(server, ca_bundle=str(pki.ca)), retries=0)
        mails = smtp.wait_for(1)
        plain = send_email(_message(), SmtpServer(smtp.host, smtp.port), retries=0)  # no STARTTLS: refused
    assert delivered.ok and delivered.attempts == 1, delivered
    assert len(mails) == 1 and mails[0].message["Subject"] == "[stockml warning] stockml: drift over TLS"
    assert mails[0].message.get_content().startswith("Drift: 1 of 5 features drifted")
    assert not refused.ok and refused.attempts == 1, refused
    assert refused.error.startswith(f"TLS certificate of 127.0.0.1:{smtp.port} not trusted: "), refused.error
    assert not plain.ok and plain.status == 530, plain  # the server requires STARTTLS first


def test_smtps_with_the_private_ca_delivers_and_without_it_fails_clearly(pki):
    with smtp_server(tls=pki.server_context(), implicit_tls=True) as smtp:
        refused = send_email(_message(), SmtpServer(smtp.host, smtp.port, ssl=True, timeout_s=5), retries=1)
        ok = send_email(_message(), SmtpServer(smtp.host, smtp.port, ssl=True, ca_bundle=str(pki.ca)), retries=0)
        mails = smtp.wait_for(1)
    assert ok.ok and len(mails) == 1 and mails[0].rcpt_tos == ["ops@example.org"], ok
    assert not refused.ok and refused.attempts == 1 and "not trusted" in refused.error, refused
