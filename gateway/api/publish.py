"""``POST /v1/projects/{project}/artifacts``: the publish route, the HTTP side of a publish.

It authenticates (lease → active claim, or principal with ``artifacts:write``),
refuses lineage named in the query string or headers, answers ``Expect:
100-continue`` only after the checks that need no body, reads the multipart
body part by part (at the minimum body rate, within the idle timeout) and hands
every part to the framework-free pipeline (:mod:`gateway.publish`), which stores
and commits. It also counts every outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway import artifacts, metrics
from gateway.api.bodies import json_response
from gateway.api.credentials import publisher_of
from gateway.api.middleware import send_continue
from gateway.api.params import project_of
from gateway.api.problems import problem_for
from gateway.api.state import CONFIG, DB, STORE, RequestContext, client_gone, context
from gateway.bodypace import BodyPace
from gateway.config import Config
from gateway.errors import (
    ArtifactTooLarge,
    ClientClosed,
    InvalidRequest,
    LineageNotAllowed,
    UnsupportedMediaType,
)
from gateway.jsonio import JsonRefused, parse_json
from gateway.logs import get_logger
from gateway.publish import MAX_PARTS, Publish, is_lineage_header, is_lineage_name
from gateway.rows import ArtifactRow, IdempotencyRecord

log = get_logger("gateway.publish")
READ_CHUNK = 256 * 1024


def reject_lineage(request: web.Request) -> None:
    for key in request.query:
        if is_lineage_name(key):
            raise LineageNotAllowed(f"query parameter '{key}' names lineage")
    for header in request.headers:
        if is_lineage_header(header):
            raise LineageNotAllowed(f"header '{header}' names lineage")


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


async def _file_chunks(
    part: BodyPartReader, ctx: RequestContext, pace: BodyPace
) -> AsyncIterator[bytes]:
    received = 0
    while chunk := await _read_chunk(part, READ_CHUNK, pace):
        received += len(chunk)
        ctx.bytes_in = received
        yield chunk


def _pace(config: Config) -> BodyPace:
    return BodyPace(
        idle_timeout=config.body_idle_timeout_seconds,
        min_rate=config.body_min_rate_bytes_per_second,
        window_seconds=config.body_min_rate_window_seconds,
    )


async def read_form(
    request: web.Request, job: Publish, replay: IdempotencyRecord | None
) -> str | None:
    """Hand every part to ``job``: store the file, or on a replay only hash it (returned)."""
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise InvalidRequest(f"malformed multipart body: {exc}") from None
    pace = _pace(job.config)
    parts, digest = 0, None
    while (part := await _next_part(reader, pace)) is not None:
        parts += 1
        if parts > MAX_PARTS:
            raise InvalidRequest(f"a publish has at most {MAX_PARTS} parts")
        if not isinstance(part, BodyPartReader):
            raise InvalidRequest("nested multipart bodies are not accepted")
        if part.name is None:
            raise InvalidRequest("every part needs a Content-Disposition name")
        if part.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise InvalidRequest("parts with a Content-Encoding are not accepted")
        cap = job.form.begin(part.name)
        if cap is not None:
            job.form.describe(part.name, await _read_capped(part, cap, pace))
            continue
        job.form.file_labels(
            part.headers.get("Content-Disposition", ""), part.headers.get("Content-Type")
        )
        chunks = _file_chunks(part, context(request), pace)
        if replay is not None:
            digest = await job.digest_file(chunks)
        else:
            await job.store_file(chunks)
    job.form.finish()
    return digest


# A JSON body holds the text JSON-escaped (up to 6 bytes per byte for control
# characters) and the descriptive keys: its byte limit, before the text's own.
JSON_ESCAPE_FACTOR = 6
JSON_BODY_OVERHEAD = 64 * 1024


def json_body_limit(config: Config) -> int:
    return config.max_json_content_bytes * JSON_ESCAPE_FACTOR + JSON_BODY_OVERHEAD


async def read_json_body(request: web.Request, limit: int, pace: BodyPace) -> dict[str, Any]:
    """The JSON publish body, read in chunks up to ``limit`` bytes (then 413)."""
    body = bytearray()
    while True:
        idle_timeout, started = pace.idle_timeout, pace.started()
        try:
            async with asyncio.timeout(idle_timeout):
                chunk = await request.content.readany()
        except TimeoutError:
            raise InvalidRequest(f"no body bytes arrived for {idle_timeout:g} seconds") from None
        pace.arrived(len(chunk), started)
        if not chunk:
            break
        body += chunk
        context(request).bytes_in = len(body)
        if len(body) > limit:
            raise ArtifactTooLarge(
                f"a JSON publish body is at most {limit} bytes: "
                "send larger files as multipart/form-data"
            )
    try:
        value = parse_json(bytes(body))
    except JsonRefused as exc:
        raise InvalidRequest(f"the body is refused: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest("the body must be a JSON object")
    return value


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


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
    if media_type not in ("multipart/form-data", "application/json"):
        raise UnsupportedMediaType(
            "the publish body must be multipart/form-data, or application/json for a text"
        )
    config = request.app[CONFIG]
    as_json = media_type == "application/json"
    if as_json and (request.content_length or 0) > json_body_limit(config):
        raise ArtifactTooLarge(
            f"a JSON publish body is at most {json_body_limit(config)} bytes: "
            "send larger files as multipart/form-data"
        )
    job = Publish(
        config=config,
        db=request.app[DB],
        store=request.app[STORE],
        project=project,
        publisher=publisher,
        content_length=request.content_length,
    )
    context(request).artifact_id = job.artifact_id
    idempotency = publisher.idempotency(request.headers.get("Idempotency-Key"))
    replay = await job.replay_of(idempotency)
    if replay is None and not as_json:
        await job.precheck()
    # Every refusal that needs no body came before this point: only now is a
    # client that waits on `Expect: 100-continue` asked for the body.
    await send_continue(request)
    if as_json:
        body = await read_json_body(request, json_body_limit(config), _pace(config))
        text = job.text_file(body)
        if replay is not None:
            job.check_replay(replay, await job.digest_file(_one(text)))
            return _answer(replay.artifact, status=200)
        await job.precheck(exact_size=len(text))
    elif replay is not None:
        digest = await read_form(request, job, replay)
        job.check_replay(replay, digest or "")
        return _answer(replay.artifact, status=200)
    try:
        if as_json:
            context(request).bytes_in = len(text)
            await job.store_file(_one(text))
        else:
            await read_form(request, job, None)
        row, created = await job.commit(idempotency)
    except BaseException:
        await job.discard()
        raise
    return _answer(row, status=201 if created else 200)


def _answer(row: ArtifactRow, *, status: int) -> web.Response:
    # From validated ids, and quoted anyway: a header value never carries CR or LF.
    location = f"/v1/projects/{quote(row.project_id, safe='')}/artifacts/{row.artifact_id}"
    return json_response(artifacts.reference(row), status=status, headers={"Location": location})
