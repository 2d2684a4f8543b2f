"""Downloading: resumable with ``Range``, verified by sha256, renamed into place.

The bytes go to ``.<name>.part`` beside the destination; an interrupted transfer
resumes there with ``Range`` (the ``ETag`` must still name the same content,
else it starts over). The result is renamed into place only when its sha256
matches both the ``Repr-Digest`` header and the sha256 the gateway recorded;
otherwise the partial file is removed and :class:`DigestMismatch` raised.

:func:`read_content` reads a small artifact whole into memory instead, bounded
by a size the caller chooses, with the same checks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import io
import os
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import aiohttp
from yarl import URL

from mobius_artifacts.errors import ArtifactDeleted, ArtifactTooLarge, DigestMismatch, Unavailable
from mobius_artifacts.transport import CHUNK_SIZE, Activity, Retryable, Transport
from mobius_artifacts.values import Artifact, ArtifactContent, Progress

_CONTENT_RANGE = re.compile(r"[ \t]*bytes[ \t]+([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)[ \t]*")


def parse_repr_digest(value: str | None) -> str | None:
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


async def download(
    transport: Transport,
    artifact: Artifact,
    dest: str | os.PathLike[str],
    progress: Progress | None,
) -> Path:
    """Download ``artifact`` to ``dest`` (a file, or a directory to use its name: an
    existing one, or a path ending with a separator, which is created).

    An existing file at the destination is replaced. After a network failure
    (:class:`Unavailable`) or an interruption the partial file stays, and the
    next call for the same destination resumes it. Returns the final path.
    """
    if artifact.deleted:
        raise ArtifactDeleted(
            f"artifact {artifact.id} was deleted; only its tombstone remains", status=410
        )
    loop = asyncio.get_running_loop()
    target = Path(dest)
    if os.fspath(dest).endswith(("/", os.sep)):
        await loop.run_in_executor(None, lambda: target.mkdir(parents=True, exist_ok=True))
    if await loop.run_in_executor(None, target.is_dir):
        target = target / artifact.name
    part = target.with_name("." + target.name + ".part")
    fh = await loop.run_in_executor(None, _open_part, part)
    try:
        resumed = await loop.run_in_executor(None, fh.seek, 0, io.SEEK_END) > 0
        state = PartialFile(artifact, fh)
        if resumed:
            await loop.run_in_executor(None, state.rehash)
        await _download_into(transport, state, progress)
        if resumed and state.sha256() != artifact.sha256:
            state.restart()  # a stale partial file of other bytes: start over once
            await _download_into(transport, state, progress)
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


async def _download_into(
    transport: Transport,
    state: PartialFile,
    progress: Progress | None,
    fetch: Callable[[Transport, URL, Any, Activity], Awaitable[None]] | None = None,
) -> None:
    """The transfer into ``state``, retried; each attempt resumes after what it has
    (``fetch``: :func:`_fetch` for a file, :func:`_fetch_into` for a stream)."""
    url = transport.url("artifacts", state.artifact.id, "content")
    fetch_one = _fetch if fetch is None else fetch

    async def attempt() -> None:
        before = state.have
        state.moved = False
        activity = Activity(progress, state.artifact.size, start=state.have)
        try:
            await transport.watched(fetch_one(transport, url, state, activity), activity)
        finally:
            state.moved = state.have > before

    await transport.retrying(attempt, progressed=lambda: state.moved)


async def _fetch(transport: Transport, url: URL, state: PartialFile, activity: Activity) -> None:
    loop = asyncio.get_running_loop()
    size = state.artifact.size
    if state.have >= size:
        state.restart()  # complete already (or too long): fetch it whole again
    headers = {**transport.read_headers(), "Accept-Encoding": "identity"}
    if state.have:
        headers["Range"] = f"bytes={state.have}-"
        headers["If-Range"] = state.etag
    async with transport.request("GET", url, headers=headers, timeout=transport.timeout) as resp:
        activity.touch()
        await transport.raise_for(resp)
        if resp.status == 206 and not state.accepts_partial(resp):
            state.restart()
            raise Retryable(cause=aiohttp.ClientPayloadError("range answer did not match"))
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


async def download_to(
    transport: Transport, artifact: Artifact, sink: IO[bytes], progress: Progress | None
) -> None:
    """Write the content of ``artifact`` to ``sink`` (a binary file object, e.g. stdout)
    as it arrives, and verify its sha256 at the end.

    The bytes reach ``sink`` before they are verified, since it cannot be rewound:
    :class:`DigestMismatch` at the end means that what was written is not the
    artifact. A retry resumes with ``Range`` after the bytes already written (a
    ``200`` answer instead has its first bytes skipped, so nothing is written twice).
    """
    if artifact.deleted:
        raise ArtifactDeleted(
            f"artifact {artifact.id} was deleted; only its tombstone remains", status=410
        )
    state = StreamedFile(artifact, sink)
    await _download_into(transport, state, progress, fetch=_fetch_into)
    state.verify()


async def _fetch_into(
    transport: Transport, url: URL, state: StreamedFile, activity: Activity
) -> None:
    loop = asyncio.get_running_loop()
    size = state.artifact.size
    headers = {**transport.read_headers(), "Accept-Encoding": "identity"}
    if state.have:
        headers["Range"] = f"bytes={state.have}-"
        headers["If-Range"] = state.etag
    async with transport.request("GET", url, headers=headers, timeout=transport.timeout) as resp:
        activity.touch()
        await transport.raise_for(resp)
        skip = 0
        if resp.status == 206 and not state.accepts_partial(resp):
            raise DigestMismatch(
                f"the gateway resumed {state.artifact.id} with other bytes "
                f"(Content-Range {resp.headers.get('Content-Range')!r}, "
                f"ETag {resp.headers.get('ETag')!r}); {state.have} bytes were written already"
            )
        if resp.status == 200:
            skip = state.have  # the whole body came instead of the rest
        state.check_header(resp.headers.get("Repr-Digest"))
        buffer = bytearray()

        async def flush() -> None:
            nonlocal buffer
            data, buffer = bytes(buffer), bytearray()
            await loop.run_in_executor(None, state.append, data)
            activity.advance(len(data))

        try:
            async for chunk in resp.content.iter_any():
                activity.touch()
                dropped = min(skip, len(chunk))
                skip -= dropped
                buffer += chunk[dropped:]
                if len(buffer) >= CHUNK_SIZE:
                    await flush()
        finally:
            if buffer:  # keep what arrived: a retry resumes after it
                await flush()
        if state.have != size:
            raise aiohttp.ClientPayloadError(f"got {state.have} of {size} bytes")
        await loop.run_in_executor(None, state.fh.flush)


async def read_content(transport: Transport, artifact: Artifact, max_bytes: int) -> ArtifactContent:
    """The bytes of ``artifact`` in memory, verified, with the gateway's serving decision.

    An artifact larger than ``max_bytes`` is refused before any byte is fetched
    (:class:`ArtifactTooLarge`, without a status: the limit is the caller's).
    """
    if artifact.deleted:
        raise ArtifactDeleted(
            f"artifact {artifact.id} was deleted; only its tombstone remains", status=410
        )
    if artifact.size > max_bytes:
        raise ArtifactTooLarge(
            f"artifact {artifact.id} holds {artifact.size} bytes, more than the "
            f"{max_bytes} read into memory"
        )
    url = transport.url("artifacts", artifact.id, "content")
    headers = {**transport.read_headers(), "Accept-Encoding": "identity"}

    async def attempt() -> ArtifactContent:
        async with transport.request(
            "GET", url, headers=headers, timeout=transport.timeout
        ) as resp:
            await transport.raise_for(resp)
            data = bytearray()
            async for chunk in resp.content.iter_any():
                data += chunk
                if len(data) > artifact.size:
                    break
            if len(data) != artifact.size:
                raise aiohttp.ClientPayloadError(f"got {len(data)} of {artifact.size} bytes")
            digest = parse_repr_digest(resp.headers.get("Repr-Digest"))
            got = hashlib.sha256(data).hexdigest()
            if got != artifact.sha256 or digest not in (None, artifact.sha256):
                raise DigestMismatch(
                    f"the bytes of {artifact.id} hash to {got}, expected {artifact.sha256}"
                )
            disposition = resp.headers.get("Content-Disposition", "")
            return ArtifactContent(
                artifact=artifact,
                data=bytes(data),
                content_type=resp.headers.get("Content-Type", "application/octet-stream"),
                inline=disposition.split(";")[0].strip().lower() == "inline",
            )

    return await transport.retrying(attempt)


def _open_part(path: Path) -> IO[bytes]:
    return path.open("r+b") if path.exists() else path.open("w+b")


def _finish(fh: IO[bytes], part: Path, target: Path) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()
    os.replace(part, target)


class PartialFile:
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
        match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
        etag = resp.headers.get("ETag", "").removeprefix("W/")
        return (
            match is not None
            and int(match.group(1)) == self.have
            and match.group(3) in (str(self.artifact.size), "*")
            and etag == self.etag
        )

    def check_header(self, value: str | None) -> None:
        digest = parse_repr_digest(value)
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


class StreamedFile(PartialFile):
    """The bytes of one download written to a stream that cannot be rewound."""

    def restart(self) -> None:  # pragma: no cover - never called for a stream
        raise AssertionError("a stream cannot be rewound")
