"""``GET``/``HEAD …/artifacts/{id}/content``: the bytes, streamed, under the serving policy.

Access is a principal token with ``artifacts:read`` (and visibility), or a signed
URL (``exp``, ``kid``, ``sig``). Inline or attachment, the Content-Type and the
security headers come from :mod:`gateway.content`, the same for both: never a
JavaScript MIME type, always ``nosniff`` and a ``sandbox`` policy. ``Range`` (one range) is
passed through to object storage; ``If-None-Match`` with the current ETag
answers 304.
"""

from __future__ import annotations

import base64
import re
import time

from aiohttp import web

from gateway import content, metrics, signing
from gateway.api.artifacts import visible_artifact
from gateway.api.params import artifact_id_of, project_of
from gateway.api.state import CONFIG, DB, STORE
from gateway.db import artifacts as artifact_rows
from gateway.errors import ArtifactDeleted, RangeNotSatisfiable, SignatureInvalid
from gateway.logs import get_logger
from gateway.numbers import parse_decimal
from gateway.rows import ArtifactRow
from storage import ObjectNotFound

log = get_logger("gateway.content")
STREAM_CHUNK = 256 * 1024
# RFC 9110 §14.1.2: ASCII digits (``\d`` would take any Unicode digit), optional
# white space (OWS is space and tab only).
_RANGE = re.compile(r"[ \t]*bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
BEYOND_ANY_SIZE = 2**63
"""What a position of more than 19 digits stands for: past the end of any artifact."""


def _position(digits: str) -> int:
    """A range position: its value, or :data:`BEYOND_ANY_SIZE` when it has over 19 digits."""
    value = parse_decimal(digits)
    return BEYOND_ANY_SIZE if value is None else value


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range → inclusive (start, end); None to serve the whole body.

    A syntactically invalid or multi-range header is ignored (RFC 9110 §14.2): one
    written with anything but ASCII digits is invalid. A valid one that selects
    nothing raises RangeNotSatisfiable. A position too long for int64 is past the
    end of any artifact (a first position there is unsatisfiable, a last one or a
    suffix length there means "to the end"); no string of digits is converted whole.
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    unsatisfiable = RangeNotSatisfiable(
        f"the artifact has {size} bytes", headers={"Content-Range": f"bytes */{size}"}
    )
    if not first:
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = _position(first)
    end = _position(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise unsatisfiable
    return start, min(end, size - 1)


def range_applies(if_range: str | None, etag: str) -> bool:
    """RFC 9110 §13.1.5: honour ``Range`` only if ``If-Range`` (when sent) still holds.

    The gateway's validator is the strong ETag (the sha256); an ``If-Range`` that
    is another ETag, a weak one, or a date (no Last-Modified is served) does not
    match, so the whole representation is sent instead of a part of a changed one.
    """
    return if_range is None or if_range.strip() == etag


def _etag_matches(header: str | None, etag: str) -> bool:
    if header is None:
        return False
    candidates = [part.strip() for part in header.split(",")]
    return any(c == "*" or c.removeprefix("W/") == etag for c in candidates)


def content_headers(row: ArtifactRow, *, pdf_inline: bool) -> dict[str, str]:
    shown = content.presentation(row.mime, row.content_agrees, pdf_inline=pdf_inline)
    digest = base64.b64encode(bytes.fromhex(row.sha256)).decode()
    return {
        **content.SECURITY_HEADERS,
        "Content-Type": shown.content_type,
        "Content-Disposition": content.content_disposition(shown.disposition, row.name),
        "ETag": f'"{row.sha256}"',
        "Repr-Digest": f"sha-256=:{digest}:",
    }


async def _signed_artifact(request: web.Request, params: signing.SignedParams) -> ArtifactRow:
    project = project_of(request)
    artifact_id = artifact_id_of(request)
    now = int(time.time())
    if params.exp < now or params.exp > now + signing.MAX_EXPIRES_IN + 60:
        metrics.SIGNED_URLS.labels("rejected").inc()
        raise SignatureInvalid("the signed URL has expired or was altered")
    row, minted_by = await artifact_rows.for_signed_url(
        request.app[DB], project, artifact_id, signing.sig_hash(params.sig)
    )
    if (
        row is None
        or minted_by is None
        or not signing.verify(
            request.app[CONFIG].url_signing_keys,
            params,
            project=project,
            artifact_id=artifact_id,
            principal=minted_by,
            epoch=row.signing_epoch,
        )
    ):
        metrics.SIGNED_URLS.labels("rejected").inc()
        raise SignatureInvalid("the signed URL is not valid")
    metrics.SIGNED_URLS.labels("redeemed").inc()
    log.info("signed_url.redeemed", project=project, artifact_id=artifact_id)
    return row


async def get_content(request: web.Request) -> web.StreamResponse:
    try:
        params = signing.parse(dict(request.query))
    except ValueError:
        raise SignatureInvalid("the signed URL is malformed") from None
    if params is not None:
        row = await _signed_artifact(request, params)
    else:
        _, _, row = await visible_artifact(request)
    if not row.available:
        raise ArtifactDeleted("the artifact was deleted; its tombstone remains")
    headers = content_headers(row, pdf_inline=request.app[CONFIG].serve_pdf_inline)
    size = row.size
    if _etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        response = web.StreamResponse(status=304, headers=headers)
        await response.prepare(request)
        return response
    byte_range = None
    if range_applies(request.headers.get("If-Range"), headers["ETag"]):
        byte_range = parse_range(request.headers.get("Range"), size)
    status, length = 200, size
    if byte_range is not None:
        status, length = 206, byte_range[1] - byte_range[0] + 1
        headers["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == "HEAD" or length == 0:
        await response.prepare(request)
        await response.write_eof()
        return response
    start, end = byte_range if byte_range is not None else (None, None)
    try:
        opened = await request.app[STORE].open_range(row.object_key, start, end)
    except ObjectNotFound:
        # Deleted between the row read and the object read: answer as for a deleted one.
        current = await artifact_rows.get(request.app[DB], row.project_id, row.artifact_id)
        if current is None or not current.available:
            raise ArtifactDeleted("the artifact was deleted; its tombstone remains") from None
        raise
    async with opened as reader:
        await response.prepare(request)
        async for chunk in reader.iter_chunks(STREAM_CHUNK):
            await response.write(chunk)
            metrics.DOWNLOAD_BYTES.inc(len(chunk))
    await response.write_eof()
    return response
