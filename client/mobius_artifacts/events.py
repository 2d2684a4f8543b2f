"""The project's live events: a server-sent event stream that reconnects by itself."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from typing import Final

import aiohttp

from mobius_artifacts.errors import ArtifactError, Unauthenticated
from mobius_artifacts.transport import TRANSIENT, Retryable, Transport, as_retryable, decimal
from mobius_artifacts.values import Event

MAX_SSE_LINE: Final = 4 * 1024 * 1024
END_EVENT: Final = "error"
"""The ``event:`` of the frame a gateway ends a stream with (data: a problem document)."""
EVENT_NAMES: Final = frozenset({"message", "artifact.created", "artifact.deleted"})


class EventStream:
    """An async iterator over the project's live events (server-sent events).

    It reconnects after a drop, resuming with ``Last-Event-ID`` (the ``seq`` of
    the last event seen); a connection quiet for ``stall_timeout`` (no event, no
    heartbeat) counts as dropped. After ``retries`` reconnections in a row
    without receiving anything it raises :class:`Unavailable`.

    A stream the gateway ends says why in a final ``event: error`` frame: on
    ``token_expired`` the iterator raises :class:`Unauthenticated` (code
    ``token_expired``) once the events before it are consumed, since reconnecting
    with the same token cannot succeed; on any other code (``slow_consumer``) it
    reconnects. Frames of event types it does not know are skipped.
    """

    def __init__(self, transport: Transport, *, after: int, event_type: str | None) -> None:
        self._transport = transport
        self.last_event_id = after
        self._type = event_type
        self._resp: aiohttp.ClientResponse | None = None
        self._pending: deque[Event] = deque()
        self._buffer = bytearray()
        self._data: list[str] = []
        self._frame_id: str | None = None
        self._frame_event = "message"
        self._ended: ArtifactError | None = None
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
        self._data, self._frame_id, self._frame_event = [], None, "message"

    async def __anext__(self) -> Event:
        transport = self._transport
        while not self._pending:
            if self._closed:
                raise StopAsyncIteration
            if self._ended is not None:
                await self._drop()
                raise self._ended
            try:
                if self._resp is None:
                    self._resp = await self._connect()
                chunk = await asyncio.wait_for(
                    self._resp.content.readany(), timeout=transport.stall_timeout
                )
                if not chunk:
                    raise aiohttp.ServerDisconnectedError("the event stream ended")
                self._failures = 0
                self._feed(chunk)
            except aiohttp.ClientSSLError:
                await self._drop()
                raise
            except (Retryable, *TRANSIENT) as exc:
                await self._drop()
                failure = as_retryable(exc)
                self._failures += 1
                if self._failures > transport.retries:
                    raise failure.unavailable(self._failures, transport.base_url) from exc
                delay = max(
                    transport.backoff(self._failures, failure.retry_after), self._retry_hint or 0.0
                )
                if transport.on_retry is not None:
                    transport.on_retry(failure.notice(transport.base_url), self._failures, delay)
                await asyncio.sleep(delay)
            except BaseException:
                await self._drop()
                raise
        return self._pending.popleft()

    async def _connect(self) -> aiohttp.ClientResponse:
        transport = self._transport
        params = {"after": str(self.last_event_id)}
        if self._type:
            params["type"] = self._type
        headers = {
            **transport.read_headers(),
            "Accept": "text/event-stream",
            "Cache-Control": "no-store",
            "Last-Event-ID": str(self.last_event_id),
        }
        resp = await transport.request(
            "GET",
            transport.url("events"),
            params=params,
            headers=headers,
            timeout=transport.connect_timeout_only,
        )
        try:
            await transport.raise_for(resp)
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
        elif name == "event":
            self._frame_event = value
        elif name == "retry" and (millis := decimal(value)) is not None:
            self._retry_hint = millis / 1000

    def _dispatch(self) -> None:
        data, frame_id, name = self._data, self._frame_id, self._frame_event
        self._data, self._frame_id, self._frame_event = [], None, "message"
        if not data:
            return
        if name == END_EVENT:
            self._end(json.loads("\n".join(data)))
            return
        if name not in EVENT_NAMES:
            return
        event = Event.from_json(json.loads("\n".join(data)))
        seq = decimal(frame_id) if frame_id else None
        self.last_event_id = seq if seq is not None else event.seq
        self._pending.append(event)

    def _end(self, problem: object) -> None:
        """The gateway's last word on this connection; the stream ends after it."""
        body = problem if isinstance(problem, dict) else {}
        if body.get("code") == "token_expired":
            detail = body.get("detail") or body.get("title") or "the token has expired"
            self._ended = Unauthenticated(str(detail), code="token_expired", status=401)
