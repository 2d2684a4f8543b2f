"""The asynchronous client of the artifact gateway (aiohttp).

Configuration comes from the environment a process already has, and explicit
arguments override it:

- ``MOBIUS_ARTIFACTS_URL`` — the gateway's base URL;
- ``MOBIUS_LEASE_TOKEN`` — a worker's lease token: publishes carry it, and the
  project is read from its ``prj`` claim;
- ``MOBIUS_ARTIFACTS_TOKEN`` — a principal (bearer) token for reading, listing,
  downloading, signed URLs, deletion, quota and events;
- ``MOBIUS_PROJECT`` — the project, for read clients.

The project is the ``project`` argument, else ``MOBIUS_PROJECT``, else the lease
token's ``prj`` claim, else the principal token's ``projects`` claim when it
names exactly one project. Token payloads are decoded here **without
verification**, only to route requests; the gateway verifies every token on
every request, so a forged payload gains nothing.

Transient failures (connection errors, timeouts, a stalled upload, HTTP 429,
502, 503 and 504) are retried ``retries`` times with exponential backoff and full
jitter, honouring ``Retry-After``; every other 4xx/5xx answer raises at once the
:mod:`gateway.client.errors` class of its problem ``code``. Retries exhausted
raise :class:`~gateway.client.errors.Unavailable`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import random
import re
import uuid
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, Final, TypeAlias, TypeVar
from urllib.parse import quote

import aiohttp
from aiohttp import payload as aiohttp_payload
from aiohttp.abc import AbstractStreamWriter
from yarl import URL

from gateway import __version__
from gateway.client.errors import (
    ArtifactDeleted,
    ArtifactError,
    ConfigurationError,
    DigestMismatch,
    Unavailable,
    error_for,
)

ENV_URL: Final = "MOBIUS_ARTIFACTS_URL"
ENV_LEASE_TOKEN: Final = "MOBIUS_LEASE_TOKEN"
ENV_TOKEN: Final = "MOBIUS_ARTIFACTS_TOKEN"
ENV_PROJECT: Final = "MOBIUS_PROJECT"

LEASE_HEADER: Final = "X-Mobius-Lease-Token"
CHUNK_SIZE: Final = 1024 * 1024
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER: Final = 300.0
MAX_ERROR_BODY: Final = 64 * 1024
MAX_SSE_LINE: Final = 4 * 1024 * 1024
USER_AGENT: Final = f"mobius-artifact-client/{__version__} aiohttp/{aiohttp.__version__}"

T = TypeVar("T")
Progress: TypeAlias = Callable[[int, int | None], None]
"""``progress(done_bytes, total_bytes_or_None)``; ``done`` restarts lower after a retry."""
Source: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes]
_Strings: TypeAlias = list[str]


# --------------------------------------------------------------------------- values


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value)


@dataclass(frozen=True, kw_only=True)
class ArtifactRef:
    """What a publish returns: enough to find, fetch and verify the artifact."""

    id: str
    project: str
    name: str
    mime: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any], project: str) -> ArtifactRef:
        return cls(
            id=str(data["id"]),
            project=str(data.get("project") or project),
            name=str(data["name"]),
            mime=str(data["mime"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, kw_only=True)
class Owner:
    kind: str  # "run", "user", "agent" or "service"
    id: str


@dataclass(frozen=True, kw_only=True)
class Lineage:
    run_id: str
    step_id: str
    job_id: str
    attempt: int
    worker_session_id: str
    session_id: str | None


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """The full artifact, as ``GET …/artifacts/{id}`` answers (``raw`` keeps the JSON)."""

    id: str
    project: str
    name: str
    mime: str
    size: int
    sha256: str
    state: str
    created_at: datetime
    deleted_at: datetime | None
    owner: Owner
    lineage: Lineage | None
    created_by: str | None
    description: str | None
    metadata: Mapping[str, Any]
    derived_from: tuple[str, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        lineage = data.get("lineage")
        owner = data.get("owner") or {}
        created_at = _timestamp(data.get("created_at"))
        return cls(
            id=str(data["id"]),
            project=str(data["project"]),
            name=str(data["name"]),
            mime=str(data["mime"]),
            size=int(data["size"]),
            sha256=str(data["sha256"]),
            state=str(data.get("state", "available")),
            created_at=created_at or datetime.fromtimestamp(0, UTC),
            deleted_at=_timestamp(data.get("deleted_at")),
            owner=Owner(kind=str(owner.get("kind", "")), id=str(owner.get("id", ""))),
            lineage=Lineage(**lineage) if isinstance(lineage, Mapping) else None,
            created_by=data.get("created_by"),
            description=data.get("description"),
            metadata=dict(data.get("metadata") or {}),
            derived_from=tuple(data.get("derived_from") or ()),
            raw=dict(data),
        )

    @property
    def deleted(self) -> bool:
        return self.state == "deleted"

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(
            id=self.id,
            project=self.project,
            name=self.name,
            mime=self.mime,
            size=self.size,
            sha256=self.sha256,
        )


@dataclass(frozen=True, kw_only=True)
class SignedURL:
    """An absolute URL that needs no other credential until ``expires_at``."""

    url: str
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class Quota:
    project: str
    used_bytes: int
    limit_bytes: int
    artifact_count: int

    @property
    def available_bytes(self) -> int:
        return max(0, self.limit_bytes - self.used_bytes)


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of the project's event feed (``artifact.created`` / ``artifact.deleted``)."""

    seq: int
    type: str
    artifact: Artifact
    at: datetime | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        return cls(
            seq=int(data["seq"]),
            type=str(data["type"]),
            artifact=Artifact.from_json(data["artifact"]),
            at=_timestamp(data.get("at")),
            raw=dict(data),
        )


# ---------------------------------------------------------------------- internals


class _Stalled(Exception):
    """No upload or download progress for ``stall_timeout`` seconds."""


class _Retryable(Exception):
    """One failed attempt that another attempt may fix."""

    def __init__(
        self,
        *,
        error: ArtifactError | None = None,
        cause: BaseException | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(str(error or cause))
        self.error = error
        self.cause = cause
        self.retry_after = retry_after

    def unavailable(self, attempts: int, base: URL) -> Unavailable:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if self.error is not None:
            status = self.error.status
            return Unavailable(
                f"{self.error.detail} (HTTP {status}, gave up after {tries})",
                status=status,
                request_id=self.error.request_id,
            )
        cause = self.cause
        what = f"{type(cause).__name__}: {cause}" if cause is not None else "no answer"
        if isinstance(cause, _Stalled):
            what = str(cause)
        return Unavailable(f"gateway at {base} unreachable: {what} (gave up after {tries})")


# Errors of one attempt that are worth another attempt. TLS verification errors
# are not: they will fail the same way again.
_TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, _Stalled)


def _as_retryable(exc: BaseException) -> _Retryable:
    return exc if isinstance(exc, _Retryable) else _Retryable(cause=exc)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER)


async def _json(resp: aiohttp.ClientResponse) -> Any:
    """The JSON body of a successful answer; a ``protocol_error`` when it is not JSON."""
    try:
        return json.loads(await resp.read())
    except ValueError:
        raise ArtifactError(
            f"expected JSON from {resp.url.path}, got {resp.content_type}",
            code="protocol_error",
            status=resp.status,
            request_id=resp.headers.get("X-Request-ID"),
        ) from None


def _jwt_payload(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, decoded WITHOUT verification (for routing only)."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _project_from_tokens(lease_token: str | None, token: str | None) -> str | None:
    if lease_token:
        payload = _jwt_payload(lease_token)
        if payload is None or not isinstance(payload.get("prj"), str):
            raise ConfigurationError(
                "the lease token is not a JWT with a 'prj' claim; cannot tell its project"
            )
        return str(payload["prj"])
    if token:
        payload = _jwt_payload(token) or {}
        projects = payload.get("projects")
        if isinstance(projects, list) and len(projects) == 1 and projects[0] != "*":
            return str(projects[0])
    return None


def _parse_repr_digest(value: str | None) -> str | None:
    """The sha-256 of an RFC 9530 ``Repr-Digest`` header as hex; '' when malformed."""
    if value is None:
        return None
    for member in value.split(","):
        algo, _, rest = member.strip().partition("=")
        if algo.strip().lower() != "sha-256":
            continue
        rest = rest.strip()
        if len(rest) < 2 or rest[0] != ":" or rest[-1] != ":":
            return ""
        try:
            return base64.b64decode(rest[1:-1], validate=True).hex()
        except (binascii.Error, ValueError):
            return ""
    return None


_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class _Activity:
    """Progress of one attempt: bytes moved, when they last moved, and the sha256."""

    def __init__(self, progress: Progress | None, total: int | None, start: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self.progress = progress
        self.total = total
        self.done = start
        self.last = self._loop.time()
        self.sha256: str | None = None
        self.error: BaseException | None = None
        if progress is not None:
            progress(start, total)

    def touch(self) -> None:
        self.last = self._loop.time()

    def advance(self, n: int) -> None:
        self.done += n
        self.last = self._loop.time()
        if self.progress is not None:
            self.progress(self.done, self.total)


class _UploadSource:
    """A publish's bytes, re-readable from the start when the source allows it."""

    def __init__(self, source: Source) -> None:
        self._path: Path | None = None
        self._fh: IO[bytes] | None = None
        self._owned = False
        self._start = 0
        self.name: str | None = None
        self.size: int | None = None
        self.replayable = True
        self.sent_any = False
        if isinstance(source, bytes | bytearray | memoryview):
            self._fh, self._owned = io.BytesIO(bytes(source)), True
            self.size = len(source)
        elif isinstance(source, str | os.PathLike):
            self._path = Path(source)
            if not self._path.is_file():
                raise FileNotFoundError(f"not a file: {self._path}")
            self.name = self._path.name
            self.size = self._path.stat().st_size
        elif isinstance(source, io.TextIOBase):
            raise TypeError("open the file in binary mode ('rb') to publish it")
        elif hasattr(source, "read"):
            self._fh = source
            raw_name = getattr(source, "name", None)
            if isinstance(raw_name, str) and not raw_name.startswith("<"):
                self.name = Path(raw_name).name or None
            self._measure(source)
        else:
            raise TypeError(f"cannot publish a {type(source).__name__}")

    def _measure(self, fh: IO[bytes]) -> None:
        try:
            if not fh.seekable():
                raise OSError("not seekable")
            self._start = fh.tell()
            end = fh.seek(0, io.SEEK_END)
            fh.seek(self._start)
            self.size = end - self._start
        except (OSError, ValueError, AttributeError):
            self.replayable, self.size = False, None

    @property
    def can_retry(self) -> bool:
        """A failed attempt may be retried: the bytes can be read again, or none were sent."""
        return self.replayable or not self.sent_any

    def rewind(self) -> IO[bytes]:
        """A handle at the first byte to send (blocking: call from an executor)."""
        if self._path is not None:
            if self._fh is not None:
                self._fh.close()
            self._fh = self._path.open("rb")
            return self._fh
        assert self._fh is not None
        if self.replayable:
            self._fh.seek(self._start)
        return self._fh

    def close(self) -> None:
        if self._fh is not None and (self._owned or self._path is not None):
            self._fh.close()
        self._fh = None


def _read_and_hash(fh: IO[bytes], n: int, digest: Any) -> bytes:
    chunk = fh.read(n)
    if chunk:
        digest.update(chunk)
    return chunk


class _FilePart(aiohttp_payload.Payload):
    """The ``file`` part: read in 1 MiB chunks off the event loop, counted and hashed."""

    _autoclose = True  # the source is closed by the publish, not by aiohttp

    def __init__(
        self, source: _UploadSource, activity: _Activity, *, filename: str, content_type: str
    ) -> None:
        super().__init__(source, content_type=content_type, filename=filename)
        self._source = source
        self._activity = activity
        self._size = source.size

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("a streamed file part has no string form")

    async def write(self, writer: AbstractStreamWriter) -> None:
        try:
            await self._write(writer)
        except BaseException as exc:
            self._activity.error = exc
            raise

    async def _write(self, writer: AbstractStreamWriter) -> None:
        loop = asyncio.get_running_loop()
        fh = await loop.run_in_executor(None, self._source.rewind)
        digest = hashlib.sha256()
        remaining = self._size
        while remaining is None or remaining > 0:
            n = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = await loop.run_in_executor(None, _read_and_hash, fh, n, digest)
            if not chunk:
                if remaining:
                    raise ArtifactError(
                        f"the file ended {remaining} bytes early: it changed while uploading",
                        code="source_changed",
                    )
                break
            self._source.sent_any = True
            await writer.write(chunk)
            self._activity.advance(len(chunk))
            if remaining is not None:
                remaining -= len(chunk)
        self._activity.sha256 = digest.hexdigest()


def _text_part(form: aiohttp.MultipartWriter, name: str, value: str, content_type: str) -> None:
    part = aiohttp_payload.StringPayload(value, content_type=content_type)
    part.set_content_disposition("form-data", name=name)
    form.append_payload(part)


# ------------------------------------------------------------------------- client


class AsyncArtifactClient:
    """Publish, list, fetch, download and follow artifacts of one project.

    Use it as ``async with AsyncArtifactClient() as client: ...`` (or call
    :meth:`close`). The HTTP session is created on first use, in the running
    event loop. Pass ``session`` to share an existing :class:`aiohttp.ClientSession`
    (it is then not closed here); ``env`` replaces ``os.environ`` as the source
    of configuration.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        lease_token: str | None = None,
        project: str | None = None,
        retries: int = 5,
        stall_timeout: float = 60.0,
        connect_timeout: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if env is None else env
        url = url or environ.get(ENV_URL)
        if not url:
            raise ConfigurationError(f"no gateway URL: set {ENV_URL} or give the URL explicitly")
        base = URL(url)
        if base.scheme not in ("http", "https") or not base.host:
            raise ConfigurationError(f"the gateway URL must be http(s)://host[:port] (got {url!r})")
        if retries < 0 or stall_timeout <= 0 or connect_timeout <= 0:
            raise ConfigurationError("retries must be >= 0 and timeouts > 0")
        self.base_url = base.with_query(None).with_fragment(None)
        self.token = token or environ.get(ENV_TOKEN) or None
        self.lease_token = lease_token or environ.get(ENV_LEASE_TOKEN) or None
        resolved = project or environ.get(ENV_PROJECT) or None
        if resolved is None:
            resolved = _project_from_tokens(self.lease_token, self.token)
        if not resolved:
            raise ConfigurationError(
                f"no project: set {ENV_PROJECT} (or {ENV_LEASE_TOKEN}) or give it explicitly"
            )
        self.project: str = resolved
        self.retries = retries
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._session = session
        self._owns_session = session is None
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=stall_timeout
        )

    # -- lifecycle

    async def __aenter__(self) -> AsyncArtifactClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close live event streams and the HTTP session (if this client created it)."""
        for stream in list(self._streams):
            await stream.aclose()
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise ConfigurationError("the aiohttp session given to the client is closed")
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    # -- plumbing

    def _url(self, *segments: str) -> URL:
        path = "/v1/projects/" + "/".join(quote(s, safe="") for s in (self.project, *segments))
        return URL(str(self.base_url).rstrip("/") + path, encoded=True)

    def _read_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _publish_headers(self) -> dict[str, str]:
        if self.lease_token:
            return {LEASE_HEADER: self.lease_token}
        return self._read_headers()

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        return random.uniform(0, ceiling)

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        """Raise the answer's error (a retryable one for 429/502/503/504)."""
        if resp.status < 400:
            return
        body: Mapping[str, Any] | None = None
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            raw = await resp.content.read(MAX_ERROR_BODY)
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
        error = error_for(
            resp.status, body, reason=resp.reason, request_id=resp.headers.get("X-Request-ID")
        )
        if resp.status in RETRY_STATUSES:
            raise _Retryable(error=error, retry_after=_retry_after(resp.headers.get("Retry-After")))
        raise error

    async def _retrying(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        may_retry: Callable[[], bool] | None = None,
        progressed: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or the retries run out.

        ``may_retry`` vetoes another attempt (e.g. a stream that cannot be re-read);
        ``progressed`` says the failed attempt moved bytes, which resets the count.
        """
        failures = 0
        while True:
            try:
                return await attempt()
            except aiohttp.ClientSSLError as exc:
                raise Unavailable(f"TLS failure talking to {self.base_url}: {exc}") from exc
            except (_Retryable, *_TRANSIENT) as exc:
                failure = _as_retryable(exc)
            if progressed is not None and progressed():
                failures = 0
            failures += 1
            if failures > self.retries or (may_retry is not None and not may_retry()):
                raise failure.unavailable(failures, self.base_url) from (failure.cause or failure)
            await asyncio.sleep(self._backoff(failures, failure.retry_after))

    async def _call(
        self,
        method: str,
        url: URL,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Any:
        async def attempt() -> Any:
            async with self._http().request(
                method,
                url,
                params=params,
                json=json_body,
                headers=self._read_headers(),
                timeout=self._timeout,
            ) as resp:
                await self._raise_for(resp)
                if resp.status == 204:
                    return None
                return await _json(resp)

        return await self._retrying(attempt)

    async def _watched(self, work: Awaitable[T], activity: _Activity) -> T:
        """Await ``work``, cancelling it when ``activity`` stalls for ``stall_timeout``."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                remaining = activity.last + self.stall_timeout - asyncio.get_running_loop().time()
                if remaining <= 0:
                    task.cancel()
                    await asyncio.wait({task})
                    raise _Stalled(f"no progress for {self.stall_timeout:g} s")
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})

    # -- publishing

    async def publish(
        self,
        path_or_fileobj: Source,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        derived_from: Iterable[str | ArtifactRef | Artifact] | None = None,
        mime: str | None = None,
        idempotency_key: str | None = None,
        progress: Progress | None = None,
    ) -> ArtifactRef:
        """Publish a file (path, binary file object or bytes) and return its reference.

        The bytes are streamed in 1 MiB chunks (bounded memory for any size), with
        ``Content-Length`` when the size is known. One ``Idempotency-Key`` serves
        every retry of this call, so a retry after a lost answer returns the same
        artifact and charges the quota once. A path is reopened and a seekable
        file object rewound for each attempt; a non-seekable one is not retried
        once bytes were sent. The sha256 the gateway computed is checked against
        the bytes sent (:class:`DigestMismatch` otherwise).
        """
        source = _UploadSource(path_or_fileobj)
        try:
            name = name or source.name
            if not name:
                raise ValueError("name= is required when the file object has no file name")
            form_fields: list[tuple[str, str, str]] = [("name", name, "text/plain; charset=utf-8")]
            if description is not None:
                form_fields.append(("description", description, "text/plain; charset=utf-8"))
            if metadata is not None:
                form_fields.append(("metadata", json.dumps(dict(metadata)), "application/json"))
            if derived_from is not None:
                ids = [d if isinstance(d, str) else d.id for d in derived_from]
                form_fields.append(("derived_from", json.dumps(ids), "application/json"))
            headers = {
                **self._publish_headers(),
                "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
            }
            url = self._url("artifacts")
            content_type = mime or "application/octet-stream"

            async def attempt() -> ArtifactRef:
                activity = _Activity(progress, source.size)
                form = aiohttp.MultipartWriter("form-data")
                for field_name, value, part_type in form_fields:
                    _text_part(form, field_name, value, part_type)
                part = _FilePart(source, activity, filename=name, content_type=content_type)
                part.set_content_disposition("form-data", name="file", filename=name)
                form.append_payload(part)
                try:
                    data = await self._watched(self._post(url, form, headers, activity), activity)
                except BaseException:
                    if isinstance(activity.error, ArtifactError):
                        raise activity.error from None
                    raise
                ref = ArtifactRef.from_json(data, self.project)
                if activity.sha256 is not None and activity.sha256 != ref.sha256:
                    raise DigestMismatch(
                        f"the gateway recorded sha256 {ref.sha256} for {ref.id}, "
                        f"but the bytes sent hash to {activity.sha256}"
                    )
                return ref

            return await self._retrying(attempt, may_retry=lambda: source.can_retry)
        finally:
            source.close()

    async def _post(
        self,
        url: URL,
        form: aiohttp.MultipartWriter,
        headers: Mapping[str, str],
        activity: _Activity,
    ) -> Mapping[str, Any]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout)
        async with self._http().post(url, data=form, headers=headers, timeout=timeout) as resp:
            activity.touch()
            await self._raise_for(resp)
            data: Mapping[str, Any] = await _json(resp)
            return data

    # -- reading

    async def get(self, artifact_id: str) -> Artifact:
        """The artifact (also a deleted one's tombstone, with ``state == "deleted"``)."""
        return Artifact.from_json(await self._call("GET", self._url("artifacts", artifact_id)))

    async def list(
        self,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        job_id: str | None = None,
        attempt: int | None = None,
        session_id: str | None = None,
        owner: str | None = None,
        mime_class: str | None = None,
        name_prefix: str | None = None,
        include_deleted: bool = False,
        page_size: int | None = None,
    ) -> AsyncIterator[Artifact]:
        """Every matching artifact, newest first, following ``next_cursor`` page by page."""
        params: dict[str, str] = {
            key: str(value)
            for key, value in (
                ("run_id", run_id),
                ("step_id", step_id),
                ("job_id", job_id),
                ("attempt", attempt),
                ("session_id", session_id),
                ("owner", owner),
                ("mime_class", mime_class),
                ("name_prefix", name_prefix),
                ("limit", page_size),
            )
            if value is not None
        }
        if include_deleted:
            params["include_deleted"] = "true"
        url = self._url("artifacts")
        while True:
            page = await self._call("GET", url, params=params)
            for item in page.get("items", ()):
                yield Artifact.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = str(cursor)

    async def quota(self) -> Quota:
        data = await self._call("GET", self._url("artifacts", "quota"))
        return Quota(
            project=str(data["project"]),
            used_bytes=int(data["used_bytes"]),
            limit_bytes=int(data["limit_bytes"]),
            artifact_count=int(data["artifact_count"]),
        )

    async def signed_url(self, artifact_id: str, expires_in: int = 300) -> SignedURL:
        """Mint a URL that fetches the content without a credential for ``expires_in`` s."""
        data = await self._call(
            "POST",
            self._url("artifacts", artifact_id, "signed-url"),
            json_body={"expires_in": expires_in},
        )
        absolute = self.base_url.join(URL(str(data["url"]), encoded=True))
        expires_at = _timestamp(data.get("expires_at"))
        assert expires_at is not None
        return SignedURL(url=str(absolute), expires_at=expires_at)

    async def delete(self, artifact_id: str) -> None:
        """Soft-delete the artifact (its tombstone stays); deleting twice is fine."""
        await self._call("DELETE", self._url("artifacts", artifact_id))

    def events(self, after: int = 0, type: str | None = None) -> EventStream:
        """Live events after ``after`` (server-sent events), reconnecting when dropped.

        ``async with client.events() as stream: async for event in stream: ...``
        (or ``async for`` directly and :meth:`EventStream.aclose` when done).
        """
        stream = EventStream(self, after=after, event_type=type)
        self._streams.add(stream)
        return stream

    # -- downloading

    async def download(
        self,
        artifact_id: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download the content to ``dest`` (a file path, or a directory to use the name).

        The bytes go to ``.<name>.part`` beside the destination; an interrupted
        transfer resumes there with ``Range`` (the ``ETag`` must still name the
        same content, else it starts over). The result is renamed into place only
        when its sha256 matches both the ``Repr-Digest`` header and the sha256 the
        gateway recorded; otherwise the partial file is removed and
        :class:`DigestMismatch` raised. An existing file at the destination is
        replaced. After a network failure (:class:`Unavailable`) or an interruption
        the partial file stays, and the next call for the same destination
        resumes it. Returns the final path.
        """
        artifact = await self.get(artifact_id)
        if artifact.deleted:
            raise ArtifactDeleted(
                f"artifact {artifact_id} was deleted; only its tombstone remains", status=410
            )
        loop = asyncio.get_running_loop()
        target = Path(dest)
        if await loop.run_in_executor(None, target.is_dir):
            target = target / artifact.name
        part = target.with_name("." + target.name + ".part")
        fh = await loop.run_in_executor(None, _open_part, part)
        try:
            resumed = await loop.run_in_executor(None, fh.seek, 0, io.SEEK_END) > 0
            state = _Download(artifact, fh)
            if resumed:
                await loop.run_in_executor(None, state.rehash)
            await self._download_into(state, progress)
            if resumed and state.sha256() != artifact.sha256:
                state.restart()  # a stale partial file of other bytes: start over once
                await self._download_into(state, progress)
            state.verify()
            await loop.run_in_executor(None, _finish, fh, part, target)
        except BaseException as exc:
            fh.close()
            # Keep a partial file only where a later call can resume it.
            keep = isinstance(exc, Unavailable | asyncio.CancelledError | KeyboardInterrupt)
            with contextlib.suppress(OSError):
                if not keep or part.stat().st_size == 0:
                    part.unlink(missing_ok=True)
            raise
        return target

    async def _download_into(self, state: _Download, progress: Progress | None) -> None:
        url = self._url("artifacts", state.artifact.id, "content")

        async def attempt() -> None:
            before = state.have
            state.moved = False
            activity = _Activity(progress, state.artifact.size, start=state.have)
            try:
                await self._watched(self._fetch(url, state, activity), activity)
            finally:
                state.moved = state.have > before

        await self._retrying(attempt, progressed=lambda: state.moved)

    async def _fetch(self, url: URL, state: _Download, activity: _Activity) -> None:
        loop = asyncio.get_running_loop()
        size = state.artifact.size
        if state.have >= size:
            state.restart()  # complete already (or too long): fetch it whole again
        headers = {**self._read_headers(), "Accept-Encoding": "identity"}
        if state.have:
            headers["Range"] = f"bytes={state.have}-"
            headers["If-Range"] = state.etag
        async with self._http().get(url, headers=headers, timeout=self._timeout) as resp:
            activity.touch()
            await self._raise_for(resp)
            if resp.status == 206 and not state.accepts_partial(resp):
                state.restart()
                raise _Retryable(cause=aiohttp.ClientPayloadError("range answer did not match"))
            if resp.status == 200 and state.have:
                state.restart()  # the whole body came instead of the rest
            activity.done = state.have
            state.check_header(resp.headers.get("Repr-Digest"))
            buffer = bytearray()
            try:
                async for chunk in resp.content.iter_any():
                    buffer += chunk
                    activity.touch()
                    if len(buffer) >= CHUNK_SIZE:
                        data, buffer = bytes(buffer), bytearray()
                        await loop.run_in_executor(None, state.append, data)
                        activity.advance(len(data))
            finally:
                if buffer:  # keep what arrived: a retry resumes after it
                    await loop.run_in_executor(None, state.append, bytes(buffer))
                    activity.advance(len(buffer))
            if state.have != size:
                raise aiohttp.ClientPayloadError(f"got {state.have} of {size} bytes")


def _open_part(path: Path) -> IO[bytes]:
    return path.open("r+b") if path.exists() else path.open("w+b")


def _finish(fh: IO[bytes], part: Path, target: Path) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    os.replace(part, target)


class _Download:
    """The partial file of one download and the running sha256 of its bytes."""

    def __init__(self, artifact: Artifact, fh: IO[bytes]) -> None:
        self.artifact = artifact
        self.fh = fh
        self.etag = f'"{artifact.sha256}"'
        self.digest = hashlib.sha256()
        self.have = 0
        self.moved = False
        self.header_digest: str | None = None

    def rehash(self) -> None:
        """Hash the bytes an earlier, interrupted download left (blocking)."""
        self.fh.seek(0)
        self.digest, self.have = hashlib.sha256(), 0
        while chunk := self.fh.read(CHUNK_SIZE):
            self.digest.update(chunk)
            self.have += len(chunk)

    def restart(self) -> None:
        self.fh.seek(0)
        self.fh.truncate()
        self.digest, self.have = hashlib.sha256(), 0

    def append(self, data: bytes) -> None:
        self.fh.write(data)
        self.digest.update(data)
        self.have += len(data)

    def sha256(self) -> str:
        return self.digest.hexdigest()

    def accepts_partial(self, resp: aiohttp.ClientResponse) -> bool:
        """A 206 continues our bytes: same ETag, range starting where we stopped."""
        match = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
        etag = resp.headers.get("ETag", "").removeprefix("W/")
        return (
            match is not None
            and int(match.group(1)) == self.have
            and match.group(3) in (str(self.artifact.size), "*")
            and etag == self.etag
        )

    def check_header(self, value: str | None) -> None:
        digest = _parse_repr_digest(value)
        if digest is None:
            return
        if digest != self.artifact.sha256:
            raise DigestMismatch(
                f"Repr-Digest names sha256 {digest or '(malformed)'}, but the gateway "
                f"recorded {self.artifact.sha256} for {self.artifact.id}"
            )
        self.header_digest = digest

    def verify(self) -> None:
        got = self.sha256()
        if got != self.artifact.sha256:
            raise DigestMismatch(
                f"downloaded bytes of {self.artifact.id} hash to {got}, "
                f"expected {self.artifact.sha256}"
            )


# ------------------------------------------------------------------------- events


class EventStream:
    """An async iterator over the project's live events (server-sent events).

    It reconnects after a drop, resuming with ``Last-Event-ID`` (the ``seq`` of
    the last event seen); a connection quiet for ``stall_timeout`` (no event, no
    heartbeat) counts as dropped. After ``retries`` reconnections in a row
    without receiving anything it raises :class:`Unavailable`.
    """

    def __init__(self, client: AsyncArtifactClient, *, after: int, event_type: str | None) -> None:
        self._client = client
        self.last_event_id = after
        self._type = event_type
        self._resp: aiohttp.ClientResponse | None = None
        self._pending: deque[Event] = deque()
        self._buffer = bytearray()
        self._data: _Strings = []
        self._frame_id: str | None = None
        self._failures = 0
        self._retry_hint: float | None = None
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()
        self._buffer.clear()
        self._data, self._frame_id = [], None

    async def __anext__(self) -> Event:
        client = self._client
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            try:
                if self._resp is None:
                    self._resp = await self._connect()
                chunk = await asyncio.wait_for(
                    self._resp.content.readany(), timeout=client.stall_timeout
                )
                if not chunk:
                    raise aiohttp.ServerDisconnectedError("the event stream ended")
                self._failures = 0
                self._feed(chunk)
            except aiohttp.ClientSSLError:
                await self._drop()
                raise
            except (_Retryable, *_TRANSIENT) as exc:
                await self._drop()
                failure = _as_retryable(exc)
                self._failures += 1
                if self._failures > client.retries:
                    raise failure.unavailable(self._failures, client.base_url) from exc
                delay = client._backoff(self._failures, failure.retry_after)
                await asyncio.sleep(max(delay, self._retry_hint or 0.0))
            except BaseException:
                await self._drop()
                raise
        return self._pending.popleft()

    async def _connect(self) -> aiohttp.ClientResponse:
        client = self._client
        params = {"after": str(self.last_event_id)}
        if self._type:
            params["type"] = self._type
        headers = {
            **client._read_headers(),
            "Accept": "text/event-stream",
            "Cache-Control": "no-store",
            "Last-Event-ID": str(self.last_event_id),
        }
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=client.connect_timeout)
        resp = await client._http().get(
            client._url("events"), params=params, headers=headers, timeout=timeout
        )
        try:
            await client._raise_for(resp)
            if resp.content_type != "text/event-stream":
                raise ArtifactError(
                    f"expected an event stream, got {resp.content_type}", code="protocol_error"
                )
        except BaseException:
            resp.close()
            raise
        return resp

    def _feed(self, chunk: bytes) -> None:
        self._buffer += chunk
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_SSE_LINE:
                    raise ArtifactError("an event stream line is too long", code="protocol_error")
                return
            line = bytes(self._buffer[:end]).rstrip(b"\r").decode("utf-8", "replace")
            del self._buffer[: end + 1]
            self._line(line)

    def _line(self, line: str) -> None:
        if not line:
            self._dispatch()
            return
        if line.startswith(":"):
            return  # a comment: the server's heartbeat
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._frame_id = value
        elif name == "retry" and value.isdigit():
            self._retry_hint = int(value) / 1000

    def _dispatch(self) -> None:
        data, frame_id = self._data, self._frame_id
        self._data, self._frame_id = [], None
        if not data:
            return
        event = Event.from_json(json.loads("\n".join(data)))
        self.last_event_id = int(frame_id) if frame_id and frame_id.isdigit() else event.seq
        self._pending.append(event)
