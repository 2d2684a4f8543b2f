"""The publish pipeline: ``POST /v1/projects/{project}/artifacts``.

1. Authenticate (lease → active claim, or principal with ``artifacts:write``);
   refuse lineage named in the query string or headers.
2. Refuse early what cannot fit: ``Content-Length`` beyond the maximum artifact
   size or the project's remaining quota answers 413 before the body is read.
3. Read the multipart body part by part. Descriptive parts are small and capped;
   a lineage-named part aborts the publish wherever it comes. The ``file`` part is
   streamed into object storage under a fresh key while it is hashed.
4. Commit in one transaction (see :func:`gateway.artifacts.commit_publish`).
5. Any failure after bytes were written deletes the object, in a block that runs
   even when the request task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway import artifacts, content, metrics
from gateway.api.params import ARTIFACT_ID, project_of
from gateway.artifacts import ArtifactDraft, IdempotencyClaim
from gateway.bodypace import BodyPace
from gateway.credentials import Publisher, publisher_of
from gateway.errors import (
    ArtifactDeleted,
    ArtifactTooLarge,
    ClientClosed,
    InvalidRequest,
    LineageNotAllowed,
    UnsupportedMediaType,
    problem_for,
)
from gateway.jsonio import JsonRefused, json_response, parse_json
from gateway.logs import get_logger
from gateway.middleware import send_continue
from gateway.names import InvalidName, file_part_filename, normalise_name
from gateway.state import CONFIG, DB, STORE, client_gone, context
from storage import EntityTooLarge, StoredObject, destination

log = get_logger("gateway.publish")

LINEAGE_NAMES = frozenset(
    {
        "run_id",
        "step_id",
        "job_id",
        "attempt",
        "worker_session_id",
        "session_id",
        "lineage",
        "owner",
        "project_id",
    }
)
# Under the X-Mobius- prefix, these bare words name lineage too (X-Mobius-Run …).
LINEAGE_HEADER_WORDS = frozenset({"run", "step", "job", "session", "worker_session", "project"})
LINEAGE_HEADER_PREFIX = "x-mobius-"
# Byte caps of the descriptive parts (UTF-8).
PART_CAPS = {"name": 1024, "description": 4096, "metadata": 16384, "derived_from": 8192}
MAX_PARTS = 8
MAX_DERIVED_FROM = 100
# Upper bound of everything in a form that is not the file's bytes: descriptive
# parts, part headers and boundaries. Content-Length minus this is the smallest
# the file can be, which is what the early 413 compares.
FORM_OVERHEAD = 64 * 1024
READ_CHUNK = 256 * 1024
MAX_IDEMPOTENCY_KEY = 255


def _lineage_word(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def is_lineage_name(name: str) -> bool:
    return _lineage_word(name) in LINEAGE_NAMES


def is_lineage_header(header: str) -> bool:
    """A header that names lineage: ``Run-Id`` …, or any ``X-Mobius-<lineage field>``."""
    lowered = header.strip().lower()
    if lowered.startswith(LINEAGE_HEADER_PREFIX):
        word = _lineage_word(lowered.removeprefix(LINEAGE_HEADER_PREFIX))
        return word in LINEAGE_NAMES or word in LINEAGE_HEADER_WORDS
    return is_lineage_name(header)


def reject_lineage(request: web.Request) -> None:
    for key in request.query:
        if is_lineage_name(key):
            raise LineageNotAllowed(f"query parameter '{key}' names lineage")
    for header in request.headers:
        if is_lineage_header(header):
            raise LineageNotAllowed(f"header '{header}' names lineage")


def idempotency_claim(request: web.Request, publisher: Publisher) -> IdempotencyClaim | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable chars")
    return IdempotencyClaim(credential=publisher.credential, key=key)


# Free text (a description) may hold tabs and line breaks, no other control character.
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Form:
    """What the descriptive parts said, and the stored (or replay-hashed) file."""

    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    derived_from: tuple[str, ...] = ()
    filename: str | None = None
    declared_mime: str | None = None
    stored: StoredObject | None = None
    seen: set[str] = field(default_factory=set)


async def _read_chunk(part: BodyPartReader, size: int, pace: BodyPace) -> bytes:
    """One chunk of a part; a malformed body or a client that stalls is a 400, a drip a 408."""
    idle_timeout, started = pace.idle_timeout, pace.started()
    try:
        async with asyncio.timeout(idle_timeout):
            chunk = await part.read_chunk(size)
    except TimeoutError:
        raise InvalidRequest(f"no body bytes arrived for {idle_timeout:g} seconds") from None
    except (ValueError, HttpProcessingError) as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from None
    pace.arrived(len(chunk), started)
    return chunk


async def _next_part(reader: MultipartReader, pace: BodyPace) -> Any:
    idle_timeout, started = pace.idle_timeout, pace.started()
    try:
        async with asyncio.timeout(idle_timeout):
            part = await reader.next()
    except TimeoutError:
        raise InvalidRequest(f"no body bytes arrived for {idle_timeout:g} seconds") from None
    except (ValueError, HttpProcessingError) as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from None
    pace.arrived(0, started)  # part headers: the time counts, the bytes are not payload
    return part


async def _read_capped(part: BodyPartReader, cap: int, pace: BodyPace) -> str:
    data = bytearray()
    while chunk := await _read_chunk(part, 4096, pace):
        data += chunk
        if len(data) > cap:
            raise InvalidRequest(f"part '{part.name}' is larger than {cap} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"part '{part.name}' is not UTF-8") from None


def _parse_descriptive(form: Form, name: str, text: str) -> None:
    if name == "name":
        try:
            form.name = normalise_name(text)
        except InvalidName as exc:
            raise InvalidRequest(str(exc)) from None
    elif name == "description":
        if _FORBIDDEN_IN_TEXT.search(text):
            raise InvalidRequest("description must not contain NUL or control characters")
        form.description = text
    elif name == "metadata":
        value = _json_part(name, text)
        if not isinstance(value, dict):
            raise InvalidRequest("metadata must be a JSON object")
        form.metadata = value
    elif name == "derived_from":
        value = _json_part(name, text)
        if (
            not isinstance(value, list)
            or len(value) > MAX_DERIVED_FROM
            or not all(isinstance(v, str) and ARTIFACT_ID.match(v) for v in value)
        ):
            raise InvalidRequest(
                f"derived_from must be a JSON array of at most {MAX_DERIVED_FROM} artifact ids"
            )
        form.derived_from = tuple(dict.fromkeys(value))


def _json_part(name: str, text: str) -> Any:
    try:
        return parse_json(text)
    except JsonRefused as exc:
        raise InvalidRequest(f"{name} is refused: {exc}") from None


async def _file_chunks(
    part: BodyPartReader, request: web.Request, pace: BodyPace
) -> AsyncIterator[bytes]:
    received = 0
    ctx = context(request)
    while chunk := await _read_chunk(part, READ_CHUNK, pace):
        received += len(chunk)
        ctx.bytes_in = received
        yield chunk


async def _hash_only(part: BodyPartReader, limit: int, pace: BodyPace) -> tuple[str, int]:
    """Digest a replayed file without storing it again."""
    digest, size = hashlib.sha256(), 0
    while chunk := await _read_chunk(part, READ_CHUNK, pace):
        size += len(chunk)
        if size > limit:
            raise EntityTooLarge(limit)
        digest.update(chunk)
    return digest.hexdigest(), size


class Publish:
    """One publish request, from the first header to the answer."""

    def __init__(self, request: web.Request, project: str, publisher: Publisher) -> None:
        self.request = request
        self.project = project
        self.publisher = publisher
        self.config = request.app[CONFIG]
        self.db = request.app[DB]
        self.store = request.app[STORE]
        self.artifact_id = artifacts.new_artifact_id()
        self.key = artifacts.object_key(project, self.artifact_id)
        self.pending = False  # a pending_uploads row exists
        self.written = False  # an object exists under self.key
        # The file stream's byte limit: the maximum size, or less when the
        # project's remaining quota is smaller (then ``quota`` says so).
        self.stream_limit = self.config.max_artifact_bytes
        self.quota: dict[str, Any] | None = None
        context(request).artifact_id = self.artifact_id

    async def precheck(self) -> None:
        """Refuse early what cannot fit, and bound the file stream by the quota left.

        A body small enough to be a small file (``Content-Length`` within the form
        overhead) skips the quota read: the commit's conditional charge decides. A
        larger body, or one without ``Content-Length`` (chunked), reads the quota
        once, so it is refused before its first byte when ``Content-Length``
        proves it cannot fit, and cut off as soon as it passes what is left.
        """
        length = self.request.content_length
        if length is not None and length <= FORM_OVERHEAD:
            return
        smallest = 0 if length is None else length - FORM_OVERHEAD
        if smallest > self.config.max_artifact_bytes:
            raise ArtifactTooLarge(
                f"Content-Length {length} exceeds the maximum artifact size of "
                f"{self.config.max_artifact_bytes} bytes"
            )
        state = await artifacts.quota_state(self.db, self.project, self.config.default_quota_bytes)
        left = max(0, state["limit_bytes"] - state["used_bytes"])
        if smallest > left:
            raise artifacts.quota_exceeded(smallest, state)
        if left < self.stream_limit:
            self.stream_limit, self.quota = left, state

    async def _store(self, part: BodyPartReader, pace: BodyPace) -> StoredObject:
        """Stream the file part into the store; past the quota left, 413 quota_exceeded."""
        try:
            return await destination.upload(
                self.store,
                self.key,
                _file_chunks(part, self.request, pace),
                max_bytes=self.stream_limit,
                on_multipart_started=self._on_multipart,
                owner=self.publisher.credential,
            )
        except EntityTooLarge:
            if self.quota is None:
                raise
            raise artifacts.quota_exceeded(
                self.stream_limit + 1, self.quota, at_least=True
            ) from None

    async def _on_multipart(self, upload_id: str) -> None:
        await artifacts.mark_pending(
            self.db,
            project=self.project,
            artifact_id=self.artifact_id,
            key=self.key,
            upload_id=upload_id,
        )
        self.pending = True

    async def read_form(self, reader: MultipartReader, replay: Any) -> tuple[Form, str | None]:
        """Read every part; store the file (or, on replay, only hash it)."""
        form, replay_digest = Form(), None
        parts = 0
        idle = BodyPace(
            idle_timeout=self.config.body_idle_timeout_seconds,
            min_rate=self.config.body_min_rate_bytes_per_second,
            window_seconds=self.config.body_min_rate_window_seconds,
        )
        while True:
            part = await _next_part(reader, idle)
            if part is None:
                break
            parts += 1
            if parts > MAX_PARTS:
                raise InvalidRequest(f"a publish has at most {MAX_PARTS} parts")
            if not isinstance(part, BodyPartReader):
                raise InvalidRequest("nested multipart bodies are not accepted")
            name = part.name
            if name is None:
                raise InvalidRequest("every part needs a Content-Disposition name")
            if is_lineage_name(name):
                raise LineageNotAllowed(f"part '{name}' names lineage")
            if part.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise InvalidRequest("parts with a Content-Encoding are not accepted")
            if name in form.seen:
                what = "file parts" if name == "file" else f"'{name}' parts"
                raise InvalidRequest(f"two {what}")
            form.seen.add(name)
            if name == "file":
                try:
                    form.filename = file_part_filename(part.headers.get("Content-Disposition", ""))
                except InvalidName as exc:
                    raise InvalidRequest(f"filename: {exc}") from None
                form.declared_mime = part.headers.get("Content-Type")
                if replay is not None:
                    replay_digest, _ = await _hash_only(part, self.config.max_artifact_bytes, idle)
                else:
                    form.stored = await self._store(part, idle)
                    self.written = True
            elif name in PART_CAPS:
                text = await _read_capped(part, PART_CAPS[name], idle)
                _parse_descriptive(form, name, text)
            else:
                raise InvalidRequest(f"unknown part '{name}'")
        if "file" not in form.seen:
            raise InvalidRequest("the 'file' part is missing")
        return form, replay_digest

    def artifact_name(self, form: Form) -> str:
        if form.name is not None:
            return form.name
        if not form.filename:
            raise InvalidRequest("the file part has no filename and no 'name' part was sent")
        try:
            return normalise_name(form.filename)
        except InvalidName as exc:
            raise InvalidRequest(f"filename: {exc}") from None

    def request_digest(self, form: Form) -> str:
        """sha256 over what the request says about the file (not its bytes).

        An Idempotency-Key replay must repeat it exactly; so must its file's sha256.
        """
        name = self.artifact_name(form)
        described = {
            "name": name,
            "mime": content.resolve_mime(form.declared_mime, name),
            "description": form.description,
            "metadata": form.metadata,
            "derived_from": list(form.derived_from),
        }
        canonical = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def draft(self, form: Form, stored: StoredObject) -> ArtifactDraft:
        name = self.artifact_name(form)
        mime = content.resolve_mime(form.declared_mime, name)
        verdict = content.sniff(stored.head, mime, complete=stored.size <= len(stored.head))
        lineage = self.publisher.lineage
        return ArtifactDraft(
            artifact_id=self.artifact_id,
            project=self.project,
            name=name,
            mime=mime,
            mime_class=content.mime_class(mime),
            size=stored.size,
            sha256=stored.sha256,
            sniffed_mime=verdict.sniffed_mime,
            content_agrees=verdict.agrees,
            owner_kind=self.publisher.owner_kind,
            owner_id=self.publisher.owner_id,
            created_by=self.publisher.created_by,
            object_key=self.key,
            storage_backend=self.store.backend_name,
            lease_id=self.publisher.lease_id,
            lineage=lineage,
            description=form.description,
            metadata=form.metadata,
            derived_from=form.derived_from,
            request_digest=self.request_digest(form),
            viewer=self.publisher.viewer,
            viewer_is_admin=self.publisher.viewer_is_admin,
        )

    async def discard(self) -> None:
        """Remove what this publish wrote. Runs to completion even if cancelled."""

        if not (self.written or self.pending):
            return

        async def _discard() -> None:
            try:
                await self.store.delete(self.key)
                if self.pending:
                    await artifacts.clear_pending(self.db, self.key)
            except Exception:
                log.warning("publish.discard_failed", artifact_id=self.artifact_id, exc_info=True)

        task = asyncio.ensure_future(_discard())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)


async def handle_publish(request: web.Request) -> web.Response:
    """The publish route, counted: in-flight gauge, outcome by code, sizes and durations."""
    watch = metrics.Stopwatch()
    result = "internal_error"
    metrics.UPLOADS_IN_FLIGHT.inc()
    try:
        response = await _publish(request)
        result = "created" if response.status == 201 else "replayed"
        if response.status == 201:
            metrics.UPLOAD_DURATION.observe(watch.elapsed())
        return response
    except asyncio.CancelledError:
        result = ClientClosed.code if client_gone(request) else "cancelled"
        raise
    except Exception as exc:
        if client_gone(request):
            result = ClientClosed.code
        else:
            problem = problem_for(exc)
            result = problem.code if problem is not None else "internal_error"
        if result == "quota_exceeded":
            log.info("quota.exceeded", project=context(request).project)
        raise
    finally:
        metrics.UPLOADS_IN_FLIGHT.dec()
        metrics.PUBLISHES.labels(result).inc()
        metrics.UPLOAD_RECEIVED_BYTES.inc(context(request).bytes_in or 0)


async def _publish(request: web.Request) -> web.Response:
    project = project_of(request)
    reject_lineage(request)
    publisher = await publisher_of(request, project)
    # The media type alone, without aiohttp's (email-module) parameter parsing:
    # the multipart reader parses the boundary itself.
    media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type != "multipart/form-data":
        raise UnsupportedMediaType("the publish body must be multipart/form-data")
    job = Publish(request, project, publisher)
    idempotency = idempotency_claim(request, publisher)
    # A replay answers what the first publish did, whatever the quota says now.
    replay = None
    if idempotency is not None:
        replay = await artifacts.find_idempotent(job.db, project, idempotency)
    if replay is not None and replay["state"] != "available":
        raise ArtifactDeleted("the artifact this Idempotency-Key published was deleted since")
    if replay is None:
        await job.precheck()
    # Every refusal that needs no body came before this point: only now is a
    # client that waits on `Expect: 100-continue` asked for the body.
    await send_continue(request)
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from None

    if replay is not None:
        form, digest = await job.read_form(reader, replay)
        artifacts.check_replay(replay, sha256=digest or "", request_digest=job.request_digest(form))
        return _answer(replay, project, status=200)

    try:
        form, _ = await job.read_form(reader, None)
        assert form.stored is not None
        draft = job.draft(form, form.stored)
        try:
            async with job.db.acquire() as conn:
                row = await artifacts.commit_publish(
                    conn,
                    draft,
                    default_quota=job.config.default_quota_bytes,
                    idempotency=idempotency,
                    pending=job.pending,
                )
        except artifacts.IdempotencyRace:
            assert idempotency is not None
            first = await artifacts.find_idempotent(job.db, project, idempotency)
            assert first is not None
            artifacts.check_replay(first, sha256=draft.sha256, request_digest=draft.request_digest)
            await job.discard()
            return _answer(first, project, status=200)
    except BaseException:
        await job.discard()
        raise
    metrics.UPLOAD_STORED_BYTES.inc(draft.size)
    metrics.UPLOAD_SIZE.observe(draft.size)
    metrics.EVENTS_EMITTED.labels("artifact.created").inc()
    log.info(
        "artifact.published",
        project=project,
        artifact_id=job.artifact_id,
        size=draft.size,
        owner_kind=draft.owner_kind,
        lease_id=draft.lease_id,
    )
    return _answer(row, project, status=201)


def _answer(row: Any, project: str, *, status: int) -> web.Response:
    location = f"/v1/projects/{project}/artifacts/{row['artifact_id']}"
    return json_response(artifacts.reference(row), status=status, headers={"Location": location})
