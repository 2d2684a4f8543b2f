"""PutObject of a small object: one aiohttp request, signed with botocore's SigV4.

A small publish used to spend most of its storage time in botocore's request
pipeline (endpoint rules, a dozen event hooks, user-agent assembly, response
parsing), not on the wire. For an object that fits the upload's staging area,
:class:`~storage.s3.S3ObjectStore` sends the PutObject itself:

- botocore's :class:`~botocore.auth.S3SigV4Auth` signs it, with the payload's
  sha256 — which the store has just computed for the artifact — as
  ``x-amz-content-sha256``, so the S3 server also checks that the bytes it
  stores are the bytes the gateway hashed;
- aiohttp sends it on a pooled keep-alive connection.

Only the common case is handled here. :meth:`SmallPut.put` answers ``True`` when
S3 answered ``200``, ``False`` for any other answer or a connection that failed
before an answer; the store then sends the same PutObject through botocore,
whose retries, error parsing and translation decide. Timeouts are the caller's.

It is used only with an explicit endpoint and static credentials
(:meth:`SmallPut.for_settings` answers ``None`` otherwise): an AWS endpoint
chosen by region, or credentials from botocore's provider chain (instance
roles, SSO, session tokens), stay with botocore.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# The part of an error answer read before the connection is dropped.
_ERROR_BODY_BYTES = 64 * 1024


class _KnownPayloadAuth(S3SigV4Auth):  # type: ignore[misc]
    """SigV4 for S3 whose payload hash is given, not computed again from the body."""

    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_sha256"])


class SmallPut:
    """Sends PutObject requests for small objects; see the module docstring."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        connect_timeout: float,
        max_connections: int,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self._base = f"{endpoint_url.rstrip('/')}/{quote(bucket, safe='')}/"
        self._auth = _KnownPayloadAuth(Credentials(access_key_id, secret_access_key), "s3", region)
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_settings(cls, settings: Any) -> SmallPut | None:
        """The sender for ``settings`` (:class:`~storage.s3.S3Settings`), or ``None``."""
        if not (settings.endpoint_url and settings.access_key_id and settings.secret_access_key):
            return None
        if urlsplit(settings.endpoint_url).scheme not in ("http", "https"):
            return None
        return cls(
            endpoint_url=settings.endpoint_url,
            bucket=settings.bucket,
            region=settings.region,
            access_key_id=settings.access_key_id,
            secret_access_key=settings.secret_access_key,
            connect_timeout=settings.timeout_seconds,
            max_connections=settings.max_pool_connections,
        )

    def url_of(self, key: str) -> str:
        """The path-style URL of ``key``, percent-encoded as SigV4 signs it."""
        return self._base + quote(key, safe="/~")

    def signed_headers(self, key: str, *, content_type: str, sha256_hex: str) -> dict[str, str]:
        """The headers of a PutObject of ``key``, ``Authorization`` included."""
        request = AWSRequest(
            method="PUT", url=self.url_of(key), headers={"Content-Type": content_type}
        )
        request.context["payload_sha256"] = sha256_hex
        self._auth.add_auth(request)
        return dict(request.headers.items())

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def put(
        self, key: str, body: bytes | bytearray, *, content_type: str, sha256_hex: str
    ) -> bool:
        """Store ``body`` under ``key``; ``True`` if S3 answered 200.

        ``sha256_hex`` must be the sha256 of ``body``: S3 refuses the request
        otherwise. Raises :class:`aiohttp.ClientError` or :class:`OSError` when the
        connection fails.
        """
        if self._session is None:
            raise RuntimeError("SmallPut.start() was not called")
        headers = self.signed_headers(key, content_type=content_type, sha256_hex=sha256_hex)
        # The URL is already percent-encoded; aiohttp's requoting leaves it as is.
        async with self._session.put(
            self.url_of(key), data=bytes(body), headers=headers
        ) as response:
            if response.status == 200:
                await response.read()
                return True
            await response.content.read(_ERROR_BODY_BYTES)
            return False
