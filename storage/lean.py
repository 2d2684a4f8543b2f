"""The two hottest S3 calls without botocore's request pipeline.

A small publish or a small download used to spend most of its storage time in
botocore's request pipeline (endpoint rules, a dozen event hooks, user-agent
assembly, response parsing), not on the wire. :class:`LeanS3` sends two
requests itself, on a pooled aiohttp session:

- **PutObject of an object that fits the upload's staging area.** botocore's
  :class:`~botocore.auth.S3SigV4Auth` signs it with the payload's sha256 — which
  :func:`storage.destination.upload` computed for the artifact while streaming
  and handed to the upload's commit — as ``x-amz-content-sha256``, so an S3
  server that checks it (AWS S3 does) refuses bytes that differ from the ones
  the gateway hashed.
- **GetObject, whole or ranged.** The body streams from the aiohttp response.

Only the common case is handled here: :meth:`LeanS3.put` answers ``True`` for a
``200``, :meth:`LeanS3.get` returns the response for a ``200`` or ``206``; any
other answer, or a connection that failed before an answer, gives ``False`` /
``None``, and :class:`~storage.s3.S3ObjectStore` sends the same request again
through botocore, whose retries, error parsing and translation decide (a
missing key, an unsatisfiable range, a refused signature). Timeouts are the
caller's.

It is used only with an explicit ``http(s)`` endpoint and static credentials
(:meth:`LeanS3.for_settings` answers ``None`` otherwise): an AWS endpoint
chosen by region, or credentials from botocore's provider chain (instance
roles, SSO, session tokens), stay with botocore.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from botocore.auth import EMPTY_SHA256_HASH, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# The part of an error answer read before the connection is dropped.
_ERROR_BODY_BYTES = 64 * 1024


class _KnownPayloadAuth(S3SigV4Auth):  # type: ignore[misc]
    """SigV4 for S3 whose payload hash is given, not computed again from the body."""

    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_sha256"])


class LeanS3:
    """Sends PutObject (small objects) and GetObject requests; see the module docstring."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        bucket: str,
        region: str,
        access_key_id: str,
        secret_access_key: str,
        connect_timeout: float,
        read_timeout: float,
        max_connections: int,
    ) -> None:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self._base = f"{endpoint_url.rstrip('/')}/{quote(bucket, safe='')}/"
        self._auth = _KnownPayloadAuth(Credentials(access_key_id, secret_access_key), "s3", region)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_settings(cls, settings: Any) -> LeanS3 | None:
        """The client for ``settings`` (:class:`~storage.s3.S3Settings`), or ``None``."""
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
            read_timeout=settings.read_timeout,
            max_connections=settings.max_pool_connections,
        )

    def url_of(self, key: str) -> str:
        """The path-style URL of ``key``, percent-encoded as SigV4 signs it."""
        return self._base + quote(key, safe="/~")

    def signed_headers(
        self, method: str, key: str, headers: dict[str, str], *, sha256_hex: str
    ) -> dict[str, str]:
        """``headers`` and the SigV4 ones (``Authorization`` included) for ``method`` on ``key``."""
        request = AWSRequest(method=method, url=self.url_of(key), headers=dict(headers))
        request.context["payload_sha256"] = sha256_hex
        self._auth.add_auth(request)
        return dict(request.headers.items())

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            timeout=self._timeout,
            skip_auto_headers=("User-Agent",),
            auto_decompress=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("LeanS3.start() was not called")
        return self._session

    async def put(
        self, key: str, body: bytes | bytearray, *, content_type: str, sha256_hex: str
    ) -> bool:
        """Store ``body`` under ``key``; ``True`` if S3 answered 200.

        ``sha256_hex`` must be the sha256 of ``body``. Raises
        :class:`aiohttp.ClientError` or :class:`OSError` when the connection fails.
        """
        session = self._open_session()
        headers = self.signed_headers(
            "PUT", key, {"Content-Type": content_type}, sha256_hex=sha256_hex
        )
        # The URL is already percent-encoded; aiohttp's requoting leaves it as is.
        async with session.put(self.url_of(key), data=bytes(body), headers=headers) as response:
            if response.status == 200:
                await response.read()
                return True
            await response.content.read(_ERROR_BODY_BYTES)
            return False

    async def get(self, key: str, range_header: str | None = None) -> aiohttp.ClientResponse | None:
        """Start reading ``key`` (or ``range_header`` of it): the response, or ``None``.

        The response (``200`` or ``206``, headers read, body not yet) must be
        closed by the caller. Raises :class:`aiohttp.ClientError` or
        :class:`OSError` when the connection fails.
        """
        session = self._open_session()
        extra = {"Range": range_header} if range_header is not None else {}
        headers = self.signed_headers("GET", key, extra, sha256_hex=EMPTY_SHA256_HASH)
        response = await session.get(self.url_of(key), headers=headers)
        if response.status in (200, 206) and response.content_length is not None:
            return response
        response.close()
        return None
