"""Publishing: one multipart ``POST`` per attempt, streamed, hashed, retried safely.

(A small text artifact can instead be one JSON ``POST``: :func:`publish_text`.)

The bytes are streamed in 1 MiB chunks (bounded memory for any size), with
``Content-Length`` when the size is known. One ``Idempotency-Key`` serves every
retry of a publish, so a retry after a lost answer returns the same artifact and
charges the quota once. A path is reopened and a seekable file object rewound for
each attempt; a non-seekable one is not retried once bytes were sent. The sha256
the gateway computed is checked against the bytes sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Final

import aiohttp
from aiohttp import payload as aiohttp_payload
from aiohttp.abc import AbstractStreamWriter
from yarl import URL

from mobius_artifacts.errors import ArtifactError, DigestMismatch
from mobius_artifacts.transport import CHUNK_SIZE, Activity, Transport, read_json
from mobius_artifacts.values import Artifact, ArtifactRef, Progress, Source

TEXT: Final = "text/plain; charset=utf-8"


class UploadSource:
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


class FilePart(aiohttp_payload.Payload):
    """The ``file`` part: read in 1 MiB chunks off the event loop, counted and hashed."""

    _autoclose = True  # the source is closed by the publish, not by aiohttp

    def __init__(
        self, source: UploadSource, activity: Activity, *, filename: str, content_type: str
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


async def publish(
    transport: Transport,
    path_or_fileobj: Source,
    *,
    name: str | None,
    description: str | None,
    metadata: Mapping[str, Any] | None,
    derived_from: Iterable[str | ArtifactRef | Artifact] | None,
    mime: str | None,
    idempotency_key: str | None,
    progress: Progress | None,
    artifact_type: str | None = None,
) -> ArtifactRef:
    """Publish the bytes of ``path_or_fileobj``; see the module docstring."""
    source = UploadSource(path_or_fileobj)
    try:
        name = name or source.name
        if not name:
            raise ValueError("name= is required when the file object has no file name")
        form_fields: list[tuple[str, str, str]] = [("name", name, TEXT)]
        if description is not None:
            form_fields.append(("description", description, TEXT))
        if metadata is not None:
            form_fields.append(("metadata", json.dumps(dict(metadata)), "application/json"))
        if derived_from is not None:
            ids = [d if isinstance(d, str) else d.id for d in derived_from]
            form_fields.append(("derived_from", json.dumps(ids), "application/json"))
        if artifact_type is not None:
            form_fields.append(("artifact_type", artifact_type, TEXT))
        headers = {
            **transport.publish_headers(),
            "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
        }
        url = transport.url("artifacts")
        content_type = mime or "application/octet-stream"

        async def attempt() -> ArtifactRef:
            activity = Activity(progress, source.size)
            form = aiohttp.MultipartWriter("form-data")
            for field_name, value, part_type in form_fields:
                _text_part(form, field_name, value, part_type)
            part = FilePart(source, activity, filename=name, content_type=content_type)
            part.set_content_disposition("form-data", name="file", filename=name)
            form.append_payload(part)
            try:
                data = await transport.watched(
                    _post(transport, url, form, headers, activity), activity
                )
            except BaseException:
                if isinstance(activity.error, ArtifactError):
                    raise activity.error from None
                raise
            ref = ArtifactRef.from_json(data, transport.project)
            if activity.sha256 is not None and activity.sha256 != ref.sha256:
                raise DigestMismatch(
                    f"the gateway recorded sha256 {ref.sha256} for {ref.id}, "
                    f"but the bytes sent hash to {activity.sha256}"
                )
            return ref

        return await transport.retrying(attempt, may_retry=lambda: source.can_retry)
    finally:
        source.close()


async def _post(
    transport: Transport,
    url: URL,
    form: aiohttp.MultipartWriter,
    headers: Mapping[str, str],
    activity: Activity,
) -> Mapping[str, Any]:
    async with transport.request(
        "POST", url, data=form, headers=headers, timeout=transport.connect_timeout_only
    ) as resp:
        activity.touch()
        await transport.raise_for(resp)
        data: Mapping[str, Any] = await read_json(resp)
        return data


async def publish_text(
    transport: Transport,
    name: str,
    content: str,
    *,
    mime: str | None,
    description: str | None,
    metadata: Mapping[str, Any] | None,
    derived_from: Iterable[str | ArtifactRef | Artifact] | None,
    artifact_type: str | None,
    idempotency_key: str | None,
) -> ArtifactRef:
    """Publish ``content`` as a text artifact: one JSON ``POST``, retried with one key.

    The gateway stores the UTF-8 bytes of ``content`` (at most
    ``GATEWAY_MAX_JSON_CONTENT_BYTES``, 1 MiB by default; larger is
    :class:`~mobius_artifacts.errors.ArtifactTooLarge`: publish a file instead);
    the sha256 it records is checked against those bytes.
    """
    body: dict[str, Any] = {"name": name, "content": content}
    optional: dict[str, Any] = {
        "mime": mime,
        "description": description,
        "metadata": dict(metadata) if metadata is not None else None,
        "derived_from": (
            [d if isinstance(d, str) else d.id for d in derived_from]
            if derived_from is not None
            else None
        ),
        "artifact_type": artifact_type,
    }
    body |= {key: value for key, value in optional.items() if value is not None}
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    sha256 = hashlib.sha256(content.encode("utf-8")).hexdigest()
    headers = {
        **transport.publish_headers(),
        "Content-Type": "application/json",
        "Idempotency-Key": idempotency_key or str(uuid.uuid4()),
    }
    url = transport.url("artifacts")

    async def attempt() -> ArtifactRef:
        # a file object: aiohttp warns about raw bytes above 1 MiB
        body = io.BytesIO(payload)
        async with transport.request(
            "POST", url, data=body, headers=headers, timeout=transport.timeout
        ) as resp:
            await transport.raise_for(resp)
            data = await read_json(resp)
        ref = ArtifactRef.from_json(data, transport.project)
        if ref.sha256 != sha256:
            raise DigestMismatch(
                f"the gateway recorded sha256 {ref.sha256} for {ref.id}, "
                f"but the text sent hashes to {sha256}"
            )
        return ref

    return await transport.retrying(attempt)
