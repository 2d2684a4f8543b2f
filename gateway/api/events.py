"""Events feed: ``GET /v1/projects/{project}/events`` (paged JSON or server-sent events).

The JSON answer is one page of the project's outbox after ``after``. With
``Accept: text/event-stream`` the same events stream live: everything after the
cursor (``Last-Event-ID`` wins over ``after``) is replayed from the table page by
page, then the stream follows its project's feed on the process's event hub
(:mod:`gateway.events`). ``limit`` shapes the JSON answer only, though it is
validated either way.

A stream never outlives its credential: it ends when the token does (its
``exp`` plus the leeway, the moment a plain request with it is refused), with a
final ``event: error`` whose data is a problem document (``code``
``token_expired``); a stream that falls too far behind ends the same way
(``slow_consumer``). A principal, and a project, may hold only so many streams
open on a replica: beyond that, ``429 rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from aiohttp import web

from gateway import events
from gateway.api.bodies import json_response
from gateway.api.credentials import reader_of
from gateway.api.middleware import release_drain
from gateway.api.params import MAX_INT64, ascii_int, project_of
from gateway.api.state import DB, EVENT_HUB
from gateway.auth import Principal
from gateway.errors import PROBLEM_BASE, InvalidRequest, RateLimited
from gateway.logs import get_logger
from gateway.visibility import Viewer

log = get_logger("gateway.events")

EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}
END_EVENT = "error"
"""The ``event:`` name of the final frame of a stream the gateway ends."""
STREAM_RETRY_AFTER_SECONDS = 10
"""The ``Retry-After`` of a stream refused for a cap."""
FINAL_WRITE_SECONDS = 5.0
"""How long a stream that ends may take to write its final frame before its connection is cut."""
FEED_PARAMS = frozenset({"after", "type", "limit"})


def _single(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise InvalidRequest(f"'{name}' may be given once")
    return values[0] if values else None


def feed_query(request: web.Request, project: str, principal: Principal) -> events.FeedQuery:
    """The validated ``after`` / ``type`` / ``limit`` of the request; 400 on a bad value.

    An unknown parameter is a 400 too, as on the listing: a typo never silently
    means "from the beginning".
    """
    unknown = sorted(set(request.query) - FEED_PARAMS)
    if unknown:
        raise InvalidRequest(f"unknown query parameter(s): {', '.join(unknown)}")
    after = _single(request, "after")
    event_type = _single(request, "type")
    limit = _single(request, "limit")
    if event_type is not None and event_type not in events.EVENT_TYPES:
        raise InvalidRequest(f"'type' must be one of {', '.join(events.EVENT_TYPES)}")
    return events.FeedQuery(
        project=project,
        viewer=Viewer.of(principal),
        after=0 if after is None else ascii_int(after, "after", low=0, high=MAX_INT64),
        event_type=event_type,
        limit=(
            events.DEFAULT_LIMIT
            if limit is None
            else ascii_int(limit, "limit", low=1, high=events.MAX_LIMIT)
        ),
    )


def last_event_id(request: web.Request) -> int | None:
    """The ``Last-Event-ID`` a reconnecting client sends; None when absent or blank."""
    value = request.headers.get("Last-Event-ID", "").strip()
    if not value:
        return None
    return ascii_int(value, "Last-Event-ID", low=0, high=MAX_INT64)


def wants_stream(request: web.Request) -> bool:
    """True for a GET whose ``Accept`` names ``text/event-stream`` with a non-zero q."""
    if request.method != "GET":
        return False
    for media_range in request.headers.get("Accept", "").split(","):
        media, *params = (part.strip() for part in media_range.split(";"))
        if media.lower() == EVENT_STREAM and _quality(params) > 0:
            return True
    return False


def _quality(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


async def get_events(request: web.Request) -> web.StreamResponse:
    """``GET /v1/projects/{project}/events``: a page of JSON, or a live event stream."""
    project = project_of(request)
    principal = reader_of(request, project)
    query = feed_query(request, project, principal)
    if wants_stream(request):
        resume = last_event_id(request)
        if resume is not None:
            query = query.following(resume)
        await events.ensure_kept(request.app[DB], query)
        return await stream_events(request, query, principal)
    items = await events.fetch_page(request.app[DB], query)
    await events.ensure_kept(request.app[DB], query)
    return json_response({"items": items, "next_after": items[-1]["seq"] if items else query.after})


def end_frame(code: str) -> bytes:
    """The final ``event: error`` of a stream the gateway ends (no ``id``: a
    reconnecting client resumes after the last event it received)."""
    title, detail = events.STREAM_END_REASONS[code]
    problem = {
        "type": PROBLEM_BASE + code.replace("_", "-"),
        "title": title,
        "code": code,
        "detail": detail,
    }
    return f"event: {END_EVENT}\ndata: {json.dumps(problem, separators=(',', ':'))}\n\n".encode()


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _finish(request: web.Request, response: web.StreamResponse, final: bytes) -> None:
    """Write ``final`` and the end of the body; a client that does not take them in
    :data:`FINAL_WRITE_SECONDS` loses its connection instead."""
    try:
        async with asyncio.timeout(FINAL_WRITE_SECONDS):
            if final:
                await response.write(final)
            await response.write_eof()
    except (ConnectionError, TimeoutError):
        transport = request.transport
        if transport is not None:
            transport.abort()


async def stream_events(
    request: web.Request, query: events.FeedQuery, principal: Principal
) -> web.StreamResponse:
    """Server-sent events from ``query.after`` on, until the client, the token or the app goes."""
    hub = request.app[EVENT_HUB]
    try:
        stream = hub.admit(query, principal.sub)
    except events.StreamsExhausted as exc:
        raise RateLimited(
            f"{exc}; close one, or retry later",
            headers={"Retry-After": str(STREAM_RETRY_AFTER_SECONDS)},
        ) from None
    loop = asyncio.get_running_loop()
    expires_at = principal.expires_at
    deadline = None if expires_at is None else loop.time() + (expires_at - time.time())
    response = web.StreamResponse(headers=STREAM_HEADERS)
    response.content_type = EVENT_STREAM
    reason: str | None = None
    with stream:
        await response.prepare(request)
        release_drain(request)  # a stream does not hold up a drain
        log.info("events.stream_opened", after=query.after, event_type=query.event_type)
        try:
            async with asyncio.timeout_at(deadline) as scope:

                def stop_now() -> None:
                    if not scope.expired():
                        scope.reschedule(loop.time())

                # The hub ending the stream (too slow, shutdown) stops whatever it awaits,
                # a blocked write included.
                stream.on_end(stop_now)
                async with contextlib.aclosing(stream.chunks()) as chunks:
                    async for chunk in chunks:
                        if expires_at is not None and time.time() >= expires_at:
                            reason = "token_expired"  # checked again on every delivery
                            break
                        if _disconnected(request):
                            break
                        await response.write(chunk)
                stream.on_end(None)
        except TimeoutError:
            if stream.ended is None:  # not the hub's doing: the token's deadline
                reason = "token_expired"
        except ConnectionError:
            log.info("events.stream_client_gone", last_seq=stream.query.after)
            return response
        except Exception:
            # The headers are sent: no problem response is possible any more, only an end.
            log.exception("events.stream_failed", last_seq=stream.query.after)
        if stream.ended is not None and stream.ended != "closed":
            reason = stream.ended
    log.info("events.stream_closed", last_seq=stream.query.after, reason=reason or stream.ended)
    if not _disconnected(request):
        await _finish(request, response, end_frame(reason) if reason else b"")
    return response
