"""Playing PayPal in tests: a signing key and certificate of the test's own, served over HTTPS.

`FakePayPal` makes a CA, a TLS certificate for 127.0.0.1 and a signing certificate the way PayPal
has one (`messageverificationcerts...`), serves the signing certificate from a real HTTPS server
on a free loopback port, counts the fetches, and signs transmissions exactly as PayPal does.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from payhook.providers import paypal

CERT_PATH = "/v1/notifications/certs/CERT-360caa42-fca2a594-test"


def new_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[str, rsa.RSAPrivateKey] | None = None,
    *,
    valid_days: int = 30,
    ip: str | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    issuer_name, signing_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if ip:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def loopback_tls(directory: Path) -> tuple[Path, Path]:
    """A CA of the test's own (its PEM file) and a TLS certificate it issued for 127.0.0.1
    (certificate and key in one PEM file, for a server)."""
    ca_key, tls_key = new_key(), new_key()
    ca = certificate("payhook test CA", ca_key)
    tls = certificate("127.0.0.1", tls_key, ("payhook test CA", ca_key), ip="127.0.0.1")
    (directory / "ca.pem").write_bytes(pem(ca))
    (directory / "tls.pem").write_bytes(pem(tls) + private_pem(tls_key))
    return directory / "ca.pem", directory / "tls.pem"


@dataclass
class FakePayPal:
    """A signing key, its certificate, and the HTTPS host that serves it."""

    ca_file: Path
    port: int = 0
    signing_key: rsa.RSAPrivateKey = field(default_factory=new_key)
    served: dict[str, tuple[int, bytes, dict[str, str]]] = field(default_factory=dict)
    fetches: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cert_url(self) -> str:
        return f"https://{self.host}{CERT_PATH}"

    def client_context(self) -> ssl.SSLContext:
        """What payhook's fetcher needs to trust this fake host."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def serve(self, path: str, body: bytes, status: int = 200, **headers: str) -> None:
        self.served[path] = (status, body, headers)

    def sign(
        self,
        raw: bytes,
        webhook_id: str,
        *,
        sent_at: str | None = None,
        cert_url: str | None = None,
        key: rsa.RSAPrivateKey | None = None,
    ) -> dict[str, str]:
        """The headers PayPal sends with `raw` for the webhook `webhook_id`."""
        return paypal.sign(
            key or self.signing_key, cert_url or self.cert_url, webhook_id, raw, sent_at
        )


@contextmanager
def fake_paypal(directory: Path, *, signing_cert_days: int = 30) -> Iterator[FakePayPal]:
    """A running fake PayPal certificate host on 127.0.0.1 (HTTPS, trusted via `ca_file`)."""
    ca_key, tls_key = new_key(), new_key()
    ca = certificate("payhook test CA", ca_key)
    tls = certificate("127.0.0.1", tls_key, ("payhook test CA", ca_key), ip="127.0.0.1")
    (directory / "ca.pem").write_bytes(pem(ca))
    (directory / "tls.pem").write_bytes(pem(tls) + private_pem(tls_key))
    fake = FakePayPal(ca_file=directory / "ca.pem")
    signing = certificate(
        "messageverificationcerts.paypal.test",
        fake.signing_key,
        ("payhook test CA", ca_key),
        valid_days=signing_cert_days,
    )
    fake.serve(CERT_PATH, pem(signing))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "tls.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _handler(fake: FakePayPal) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.fetches.append(self.path)
            status, body, headers = fake.served.get(self.path, (404, b"not found", {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on `fetches` instead."""

    return Handler
