"""Events feed: ``GET /v1/projects/{project}/events`` (paged JSON or server-sent events).

The JSON answer is one page of the project's outbox after ``after``. With
``Accept: text/event-stream`` the same events stream live: everything after the
cursor (``Last-Event-ID`` wins over ``after``) is replayed from the table page by
page, then the stream waits on the process's event hub, re-reading the table
after its last ``seq`` on every wake-up and every heartbeat tick (a missed
notification costs at most one heartbeat). A stream reads pages of the largest
size; ``limit`` shapes the JSON answer only, though it is validated either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from typing import Any

from aiohttp import web

from gateway import events
from gateway.api.bodies import json_response
from gateway.api.credentials import reader_of
from gateway.api.middleware import release_drain
from gateway.api.params import MAX_INT64, ascii_int, project_of
from gateway.api.state import DB, EVENT_HUB
from gateway.auth import Principal
from gateway.errors import InvalidRequest
from gateway.logs import get_logger
from gateway.visibility import Viewer

log = get_logger("gateway.events")

EVENT_STREAM = "text/event-stream"
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}
HEARTBEAT_FRAME = b": keep-alive\n\n"
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
        return await stream_events(request, query)
    items = await events.fetch_page(request.app[DB], query)
    return json_response({"items": items, "next_after": items[-1]["seq"] if items else query.after})


def sse_frame(item: dict[str, Any]) -> bytes:
    data = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    return f"id: {item['seq']}\nevent: {item['type']}\ndata: {data}\n\n".encode()


async def _read_page(db: Any, query: events.FeedQuery) -> list[dict[str, Any]] | None:
    """A page of the stream's feed; None when the database failed (retried next tick)."""
    try:
        return await events.fetch_page(db, query)
    except events.READ_ERRORS as exc:
        log.warning("events.stream_read_failed", error=type(exc).__name__)
        return None


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def stream_events(request: web.Request, query: events.FeedQuery) -> web.StreamResponse:
    """Server-sent events from ``query.after`` on, until the client or the app goes."""
    hub = request.app[EVENT_HUB]
    db = request.app[DB]
    heartbeat = hub.heartbeat_seconds
    loop = asyncio.get_running_loop()
    query = dataclasses.replace(query, limit=events.MAX_LIMIT)
    response = web.StreamResponse(headers=STREAM_HEADERS)
    response.content_type = EVENT_STREAM
    # Subscribe before the first read, so an event committed in between still wakes us.
    with hub.subscribe(query.project) as subscription:
        await response.prepare(request)
        release_drain(request)  # a subscription does not hold up a drain
        log.info("events.stream_opened", after=query.after, event_type=query.event_type)
        last_write = loop.time()
        try:
            while not subscription.closed and not _disconnected(request):
                while True:  # everything after the cursor, one page at a time
                    items = await _read_page(db, query)
                    if items:
                        await response.write(b"".join(sse_frame(i) for i in items))
                        query, last_write = query.following(items[-1]["seq"]), loop.time()
                    if items is None or len(items) < query.limit:
                        break
                remaining = last_write + heartbeat - loop.time()
                if remaining <= 0:
                    await response.write(HEARTBEAT_FRAME)
                    last_write, remaining = loop.time(), heartbeat
                await subscription.wait(remaining)
        except ConnectionError:
            log.info("events.stream_client_gone", last_seq=query.after)
            return response
        except Exception:
            # The headers are sent: no problem response is possible any more, only an end.
            log.exception("events.stream_failed", last_seq=query.after)
    with contextlib.suppress(ConnectionError):
        await response.write_eof()
    log.info("events.stream_closed", last_seq=query.after)
    return response
