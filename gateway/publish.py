"""The publish pipeline, free of any web framework: form → stream to storage → commit.

The route (:mod:`gateway.api.publish`) speaks HTTP: it authenticates, refuses
lineage named in the query string or headers, reads the multipart body part by
part and hands each part to this pipeline:

1. Before the body: an ``Idempotency-Key`` replay is found first (it answers what
   the first publish did, whatever the quota says now); otherwise
   :meth:`Publish.precheck` refuses what ``Content-Length`` proves cannot fit and
   bounds the file stream by the quota left.
2. The form (:class:`Form`): descriptive parts are small, capped and validated; a
   lineage-named part aborts the publish wherever it comes. The file's bytes are
   streamed into object storage under a fresh key while they are hashed
   (:meth:`Publish.store_file`), or only hashed on a replay (:meth:`Publish.digest_file`).
3. The commit (:meth:`Publish.commit`): one statement (:mod:`gateway.db.publish`)
   re-checks the claim, charges quota, records the artifact, its event and its
   Idempotency-Key.
4. Any failure after bytes were written deletes the object
   (:meth:`Publish.discard`, which runs to completion even when cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

import leases
from gateway import artifacts, content, metrics
from gateway.config import Config
from gateway.db import artifacts as artifact_rows
from gateway.db import idempotency as idempotency_keys
from gateway.db import projects, uploads
from gateway.db import publish as commit_sql
from gateway.db.projects import DefaultLimits
from gateway.db.publish import IdempotencyClaim
from gateway.errors import (
    ArtifactDeleted,
    ArtifactTooLarge,
    InvalidRequest,
    LineageNotAllowed,
)
from gateway.ids import ARTIFACT_ID, ARTIFACT_TYPE
from gateway.jsonio import JsonRefused, parse_json
from gateway.logs import get_logger
from gateway.names import InvalidName, file_part_filename, normalise_name
from gateway.rows import ArtifactRow, IdempotencyRecord, QuotaRow
from gateway.visibility import Viewer
from storage import EntityTooLarge, ObjectStore, StoredObject, destination

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
PART_CAPS = {
    "name": 1024,
    "description": 4096,
    "metadata": 16384,
    "derived_from": 8192,
    "artifact_type": 256,
}
# The keys of a JSON-body publish: the descriptive parts, the text and its mime.
JSON_KEYS = frozenset({*PART_CAPS, "content", "mime"})
DEFAULT_JSON_MIME = "text/markdown"
MAX_PARTS = 8
MAX_DERIVED_FROM = 100
# Upper bound of everything in a form that is not the file's bytes: descriptive
# parts, part headers and boundaries. Content-Length minus this is the smallest
# the file can be, which is what the early 413 compares.
FORM_OVERHEAD = 64 * 1024
MAX_IDEMPOTENCY_KEY = 255
# Free text (a description) may hold tabs and line breaks, no other control character.
_FORBIDDEN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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


@dataclass(frozen=True, kw_only=True)
class Publisher:
    """Whoever publishes, and what the artifact records about them."""

    owner_kind: str  # run | user | agent | service
    owner_id: str
    created_by: str
    credential: str  # scope of Idempotency-Key: lease:<id> or principal:<sub>
    viewer: Viewer  # what it may read, and so name in derived_from
    lineage: leases.Lineage | None = None
    lease_id: str | None = None

    def idempotency(self, header: str | None) -> IdempotencyClaim | None:
        """The ``Idempotency-Key`` header's claim, scoped to this credential."""
        if header is None:
            return None
        key = header.strip()
        if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
            raise InvalidRequest(
                f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable chars"
            )
        return IdempotencyClaim(credential=self.credential, key=key)


def _json_part(name: str, text: str) -> Any:
    try:
        return parse_json(text)
    except JsonRefused as exc:
        raise InvalidRequest(f"{name} is refused: {exc}") from None


@dataclass
class Form:
    """What the parts of a publish said: the descriptive values and the file's labels."""

    name: str | None = None
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    derived_from: tuple[str, ...] = ()
    artifact_type: str | None = None
    filename: str | None = None
    declared_mime: str | None = None
    seen: set[str] = field(default_factory=set)

    def begin(self, name: str) -> int | None:
        """A part named ``name`` starts: its byte cap, or None for the file part.

        A lineage-named, repeated or unknown part is refused.
        """
        if is_lineage_name(name):
            raise LineageNotAllowed(f"part '{name}' names lineage")
        if name in self.seen:
            what = "file parts" if name == "file" else f"'{name}' parts"
            raise InvalidRequest(f"two {what}")
        if name != "file" and name not in PART_CAPS:
            raise InvalidRequest(f"unknown part '{name}'")
        self.seen.add(name)
        return None if name == "file" else PART_CAPS[name]

    def file_labels(self, disposition: str, content_type: str | None) -> None:
        """The file part's ``Content-Disposition`` (its filename) and ``Content-Type``."""
        try:
            self.filename = file_part_filename(disposition)
        except InvalidName as exc:
            raise InvalidRequest(f"filename: {exc}") from None
        self.declared_mime = content_type

    def describe(self, name: str, text: str) -> None:
        """One descriptive part's text (a multipart part), validated."""
        if name in ("metadata", "derived_from"):
            self.set_value(name, _json_part(name, text))
        else:
            self.set_value(name, text)

    def set_value(self, name: str, value: Any) -> None:
        """One descriptive value (``metadata`` and ``derived_from`` as parsed JSON)."""
        if name in ("name", "description", "artifact_type") and not isinstance(value, str):
            raise InvalidRequest(f"'{name}' must be a string")
        if name == "name":
            try:
                self.name = normalise_name(value)
            except InvalidName as exc:
                raise InvalidRequest(str(exc)) from None
        elif name == "description":
            if len(value.encode()) > PART_CAPS["description"]:
                raise InvalidRequest(f"description is larger than {PART_CAPS['description']} bytes")
            if _FORBIDDEN_IN_TEXT.search(value):
                raise InvalidRequest("description must not contain NUL or control characters")
            self.description = value
        elif name == "metadata":
            if not isinstance(value, dict):
                raise InvalidRequest("metadata must be a JSON object")
            if len(json.dumps(value).encode()) > PART_CAPS["metadata"]:
                raise InvalidRequest(f"metadata is larger than {PART_CAPS['metadata']} bytes")
            self.metadata = value
        elif name == "artifact_type":
            if not ARTIFACT_TYPE.fullmatch(value):
                raise InvalidRequest(
                    "artifact_type is a slug: a-z 0-9 . _ -, 1 to 64, starting a-z or 0-9"
                )
            self.artifact_type = value
        elif name == "derived_from":
            if (
                not isinstance(value, list)
                or len(value) > MAX_DERIVED_FROM
                or not all(isinstance(v, str) and ARTIFACT_ID.fullmatch(v) for v in value)
            ):
                raise InvalidRequest(
                    f"derived_from must be a JSON array of at most {MAX_DERIVED_FROM} artifact ids"
                )
            self.derived_from = tuple(dict.fromkeys(value))

    def finish(self) -> None:
        if "file" not in self.seen:
            raise InvalidRequest("the 'file' part is missing")

    def artifact_name(self) -> str:
        if self.name is not None:
            return self.name
        if not self.filename:
            raise InvalidRequest("the file part has no filename and no 'name' part was sent")
        try:
            return normalise_name(self.filename)
        except InvalidName as exc:
            raise InvalidRequest(f"filename: {exc}") from None

    def mime(self) -> str:
        return content.resolve_mime(self.declared_mime, self.artifact_name())

    def request_digest(self) -> str:
        """sha256 over what the request says about the file (not its bytes).

        An Idempotency-Key replay must repeat it exactly; so must its file's sha256.
        """
        described = {
            "name": self.artifact_name(),
            "mime": self.mime(),
            "description": self.description,
            "metadata": self.metadata,
            "derived_from": list(self.derived_from),
        }
        if self.artifact_type is not None:  # absent: digests recorded before it existed hold
            described["artifact_type"] = self.artifact_type
        canonical = json.dumps(described, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class Publish:
    """One publish, from its first header to its commit."""

    def __init__(
        self,
        *,
        config: Config,
        db: asyncpg.Pool,
        store: ObjectStore,
        project: str,
        publisher: Publisher,
        content_length: int | None,
    ) -> None:
        self.config = config
        self.db = db
        self.store = store
        self.project = project
        self.publisher = publisher
        self.content_length = content_length
        self.form = Form()
        self.artifact_id = artifacts.new_artifact_id()
        self.key = artifacts.object_key(project, self.artifact_id)
        self.stored: StoredObject | None = None
        self.pending = False  # a pending_uploads row exists
        # The file stream's byte limit: the maximum size, or less when the
        # project's remaining quota is smaller (then ``quota`` says so).
        self.stream_limit = config.max_artifact_bytes
        self.quota: QuotaRow | None = None

    async def replay_of(self, idempotency: IdempotencyClaim | None) -> IdempotencyRecord | None:
        """What this Idempotency-Key published before, if anything; 410 once deleted."""
        if idempotency is None:
            return None
        record = await idempotency_keys.find(
            self.db,
            self.project,
            idempotency.credential,
            idempotency.key,
            ttl_seconds=self.config.idempotency_ttl_seconds,
        )
        if record is not None and not record.artifact.available:
            raise ArtifactDeleted("the artifact this Idempotency-Key published was deleted since")
        return record

    async def precheck(self, *, exact_size: int | None = None) -> None:
        """Refuse early what cannot fit, and bound the file stream by the quota left.

        A body small enough to be a small file (``Content-Length`` within the form
        overhead) skips the quota read: the commit's conditional charge decides. A
        larger body, or one without ``Content-Length`` (chunked), reads the quota
        once, so it is refused before its first byte when ``Content-Length``
        proves it cannot fit, and cut off as soon as it passes what is left.
        ``exact_size``: the file's size is known (a JSON-body text), compare that.
        """
        length = self.content_length
        if exact_size is None and length is not None and length <= FORM_OVERHEAD:
            return
        if exact_size is not None:
            smallest = exact_size
        else:
            smallest = 0 if length is None else length - FORM_OVERHEAD
        if smallest > self.config.max_artifact_bytes:
            raise ArtifactTooLarge(
                f"Content-Length {length} exceeds the maximum artifact size of "
                f"{self.config.max_artifact_bytes} bytes"
            )
        quota = await projects.quota(self.db, self.project, DefaultLimits.of(self.config))
        if quota.full or smallest > quota.left:
            raise artifacts.quota_exceeded(
                smallest,
                quota,
                request_bytes=None if exact_size is not None else length,
                at_least=exact_size is None and length is None,
            )
        if quota.left < self.stream_limit:
            self.stream_limit, self.quota = quota.left, quota

    async def store_file(self, chunks: AsyncIterable[bytes]) -> None:
        """Stream the file into the store; past the quota left, 413 quota_exceeded."""
        try:
            self.stored = await destination.upload(
                self.store,
                self.key,
                chunks,
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

    def text_file(self, body: dict[str, Any]) -> bytes:
        """A JSON-body publish: its keys into the form, its ``content`` as the file's bytes.

        A lineage-named key is ``400 lineage_not_allowed``; an unknown one ``400``;
        ``name`` and ``content`` are required; ``content`` is UTF-8 text of at most
        ``GATEWAY_MAX_JSON_CONTENT_BYTES`` once encoded (larger: ``413``, use
        multipart); ``mime`` defaults to ``text/markdown`` and must be a media type.
        """
        for key in body:
            if is_lineage_name(key):
                raise LineageNotAllowed(f"key '{key}' names lineage")
        unknown = sorted(set(body) - JSON_KEYS)
        if unknown:
            raise InvalidRequest(f"unknown key(s): {', '.join(unknown)}")
        for required in ("name", "content"):
            if required not in body:
                raise InvalidRequest(f"'{required}' is required")
        content_text, mime = body["content"], body.get("mime", DEFAULT_JSON_MIME)
        if not isinstance(content_text, str):
            raise InvalidRequest("'content' must be a string (UTF-8 text)")
        if not isinstance(mime, str) or content.normalise_mime(mime) is None:
            raise InvalidRequest("'mime' must be a media type such as text/markdown")
        data = content_text.encode("utf-8")
        limit = self.config.max_json_content_bytes
        if len(data) > limit:
            raise ArtifactTooLarge(
                f"'content' is {len(data)} bytes; a JSON publish takes at most {limit}: "
                "send larger files as multipart/form-data"
            )
        for key in ("name", "description", "metadata", "derived_from", "artifact_type"):
            if body.get(key) is not None or key == "name":
                self.form.begin(key)
                self.form.set_value(key, body[key])
        self.form.begin("file")
        self.form.declared_mime = mime
        self.form.finish()
        return data

    async def digest_file(self, chunks: AsyncIterable[bytes]) -> str:
        """Hash a replayed file without storing it again."""
        measured = await destination.measure(chunks, max_bytes=self.config.max_artifact_bytes)
        return measured.sha256

    async def _on_multipart(self, upload_id: str) -> None:
        await uploads.mark(
            self.db,
            project=self.project,
            artifact_id=self.artifact_id,
            key=self.key,
            upload_id=upload_id,
        )
        self.pending = True

    def artifact(self, stored: StoredObject, created_at: datetime) -> ArtifactRow:
        """The artifact's row as the commit will write it (its ``seq`` comes then)."""
        form, publisher = self.form, self.publisher
        name = form.artifact_name()
        mime = form.mime()
        verdict = content.sniff(stored.head, mime, complete=stored.size <= len(stored.head))
        lineage = publisher.lineage
        return ArtifactRow(
            artifact_id=self.artifact_id,
            project_id=self.project,
            seq=0,
            name=name,
            mime=mime,
            mime_class=content.mime_class(mime),
            size=stored.size,
            sha256=stored.sha256,
            sniffed_mime=verdict.sniffed_mime,
            content_agrees=verdict.agrees,
            state="available",
            created_at=created_at,
            deleted_at=None,
            deleted_by=None,
            owner_kind=publisher.owner_kind,
            owner_id=publisher.owner_id,
            created_by=publisher.created_by,
            lease_id=publisher.lease_id,
            run_id=lineage.run_id if lineage else None,
            step_id=lineage.step_id if lineage else None,
            job_id=lineage.job_id if lineage else None,
            attempt=lineage.attempt if lineage else None,
            worker_session_id=lineage.worker_session_id if lineage else None,
            session_id=lineage.session_id if lineage else None,
            description=form.description,
            metadata=json.dumps(form.metadata, separators=(",", ":"), ensure_ascii=False),
            derived_from=form.derived_from,
            object_key=self.key,
            storage_backend=self.store.backend_name,
            signing_epoch=0,
            artifact_type=form.artifact_type,
        )

    async def commit(self, idempotency: IdempotencyClaim | None) -> tuple[ArtifactRow, bool]:
        """Record the stored file as an artifact: (the row, True), or (the first
        publish's row, False) when the same Idempotency-Key won a race."""
        assert self.stored is not None
        artifact = self.artifact(self.stored, datetime.now(UTC))
        # remembered with an Idempotency-Key only: no key, nothing to compare later
        digest = self.form.request_digest() if idempotency is not None else None
        try:
            async with self.db.acquire() as conn:
                if idempotency is not None:
                    # an expired key is recorded anew; a live one stays, and
                    # conflicting with it is a race with the same key
                    await idempotency_keys.forget_expired(
                        conn,
                        self.project,
                        idempotency.credential,
                        idempotency.key,
                        ttl_seconds=self.config.idempotency_ttl_seconds,
                    )
                row = await commit_sql.commit(
                    conn,
                    artifact,
                    event_payload=artifacts.view_json(artifact),
                    defaults=DefaultLimits.of(self.config),
                    idempotency=idempotency,
                    request_digest=digest,
                    pending=self.pending,
                    viewer=self.publisher.viewer,
                )
                if row is None:
                    await self._explain_refusal(conn, artifact)
        except commit_sql.IdempotencyRace:
            first = await self.replay_of(idempotency)
            assert first is not None
            assert digest is not None
            artifacts.check_replay(first, sha256=artifact.sha256, request_digest=digest)
            await self.discard()
            return first.artifact, False
        assert row is not None
        metrics.UPLOAD_STORED_BYTES.inc(row.size)
        metrics.UPLOAD_SIZE.observe(row.size)
        metrics.EVENTS_EMITTED.labels("artifact.created").inc()
        log.info(
            "artifact.published",
            project=self.project,
            artifact_id=row.artifact_id,
            size=row.size,
            owner_kind=row.owner_kind,
            lease_id=row.lease_id,
        )
        return row, True

    def check_replay(self, record: IdempotencyRecord, sha256: str) -> None:
        artifacts.check_replay(record, sha256=sha256, request_digest=self.form.request_digest())

    async def _explain_refusal(self, conn: Any, artifact: ArtifactRow) -> None:
        """Why the commit wrote nothing: the lease, derived_from, or the quota. Raises."""
        if artifact.lease_id is not None:
            await leases.active_claim(conn, artifact.lease_id)
        ids = list(artifact.derived_from)
        if ids and await artifact_rows.count_derivable(
            conn, self.project, ids, self.publisher.viewer
        ) != len(ids):
            # The same answer for an id that does not exist and one the publisher
            # may not see, so derived_from cannot probe for ids.
            raise InvalidRequest(
                "derived_from names an artifact that does not exist, was deleted, "
                "or that you cannot read"
            )
        quota = await projects.quota(conn, self.project, DefaultLimits.of(self.config))
        raise artifacts.quota_exceeded(artifact.size, quota)

    async def discard(self) -> None:
        """Remove what this publish wrote. Runs to completion even if cancelled."""
        if not (self.stored is not None or self.pending):
            return

        async def _discard() -> None:
            try:
                await self.store.delete(self.key)
                if self.pending:
                    await uploads.clear(self.db, self.key)
            except Exception:
                log.warning("publish.discard_failed", artifact_id=self.artifact_id, exc_info=True)

        task = asyncio.ensure_future(_discard())
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
