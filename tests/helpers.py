"""Small helpers shared by integration tests."""

from __future__ import annotations

import asyncio
import http.client
import io
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.api.protocol import GatewayRunner
from gateway.devstack import free_port
from tests.conftest import ALL_SCOPES, bearer, principal_token

SCHEDULER = bearer(principal_token("svc:scheduler", "claims:write"))
ADMIN = bearer(principal_token("user:admin", ALL_SCOPES))
READER = bearer(principal_token("user:reader", "artifacts:read"))


async def new_claim(client: Any, project: str, **over: Any) -> dict[str, Any]:
    body = {
        "run_id": "run_" + secrets.token_hex(3),
        "step_id": "build",
        "job_id": "job_" + secrets.token_hex(3),
        "attempt": 1,
        "worker_session_id": "ws_" + secrets.token_hex(3),
        "session_id": "sess_1",
        "ttl_seconds": 600,
    }
    body.update(over)
    resp = await client.post(f"/v1/projects/{project}/claims", json=body, headers=SCHEDULER)
    assert resp.status == 201, await resp.text()
    data: dict[str, Any] = await resp.json()
    data["request"] = body
    return data


def lease(claim: dict[str, Any]) -> dict[str, str]:
    return {"X-Mobius-Lease-Token": claim["lease_token"]}


def form(
    data: bytes | Any = b"hello world\n",
    *,
    filename: str = "hello.txt",
    content_type: str | None = "text/plain",
    **fields: str,
) -> aiohttp.FormData:
    fd = aiohttp.FormData(default_to_multipart=True)
    for key, value in fields.items():
        fd.add_field(key, value)
    if isinstance(data, bytes) and len(data) > 64 * 1024:
        data = io.BytesIO(data)  # aiohttp streams file objects; large bytes would block
    fd.add_field("file", data, filename=filename, content_type=content_type)
    return fd


async def publish(
    client: Any, project: str, headers: dict[str, str], data: Any = None, **kw: Any
) -> Any:
    body = form(data if data is not None else b"hello world\n", **kw)
    return await client.post(f"/v1/projects/{project}/artifacts", data=body, headers=headers)


async def quota(client: Any, project: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/projects/{project}/artifacts/quota", headers=ADMIN)
    assert resp.status == 200
    result: dict[str, Any] = await resp.json()
    return result


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true, polling every 20 ms; TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


class ServerThread:
    """The gateway on its own event loop in a thread, for synchronous property tests."""

    def __init__(self, app: web.Application) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.app = app
        self.runner: web.AppRunner | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    async def _start(self) -> None:
        self.runner = GatewayRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate it signed for 127.0.0.1 and localhost.

    Returns ``(ca.pem, server.pem, server.key)`` written under ``folder``.
    """
    import ipaddress
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "artifact gateway test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
