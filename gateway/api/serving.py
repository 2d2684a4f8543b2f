"""Serving an application on sockets that are already bound, and draining it.

:mod:`gateway.server` binds the sockets and runs the processes; this module is
its aiohttp side: a :class:`~gateway.api.protocol.GatewayRunner` on the main
sockets, a bare ``/metrics`` app on the metrics sockets, and the drain.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.api.ops import metrics_app
from gateway.api.protocol import GatewayRunner
from gateway.api.state import DRAIN
from gateway.config import Config
from gateway.logs import get_logger

log = get_logger("gateway.server")
CANCEL_AFTER_DRAIN_SECONDS = 1.0
"""What the drain leaves running is cancelled this long into the runner's cleanup."""


@dataclass
class Served:
    """An application being served: its runner and the metrics side runner, if any."""

    app: web.Application
    runner: GatewayRunner
    side: web.AppRunner | None

    async def cleanup(self) -> None:
        if self.side is not None:
            await self.side.cleanup()
        await self.runner.cleanup()


async def serve_on(
    app: web.Application,
    config: Config,
    main: list[socket.socket],
    metrics: list[socket.socket],
    *,
    backlog: int,
    metrics_backlog: int,
) -> Served:
    """Start serving ``app`` on ``main`` (and ``/metrics`` alone on ``metrics``)."""
    # The drain does the waiting; what the runner finds still running is cancelled.
    # keepalive_timeout also bounds how long a new connection may take to send a
    # complete request head: slow-drip headers are cut off after it.
    runner = GatewayRunner(
        app,
        access_log=None,
        shutdown_timeout=CANCEL_AFTER_DRAIN_SECONDS,
        keepalive_timeout=config.keepalive_timeout_seconds,
    )
    await runner.setup()
    for sock in main:
        await web.SockSite(runner, sock, backlog=backlog).start()
    side = None
    if metrics:
        side = web.AppRunner(metrics_app(), access_log=None, shutdown_timeout=1)
        await side.setup()
        for sock in metrics:
            await web.SockSite(side, sock, backlog=metrics_backlog).start()
    return Served(app=app, runner=runner, side=side)


async def drain(served: Served, timeout: float, now: asyncio.Event | None = None) -> None:
    """Stop accepting, then let requests in flight finish for up to ``timeout`` seconds.

    aiohttp's own shutdown stops reading request bodies at once, which would cut
    every upload in flight; so the listening sockets close first (this worker's
    copies: other workers sharing them keep accepting), new requests on
    open connections get ``503`` with ``Connection: close``, and only what is still
    running after ``timeout`` is cancelled by the runner's cleanup (a cancelled
    publish aborts its upload and publishes nothing). ``now`` set (a second Ctrl-C)
    ends the wait early.
    """
    state = served.app[DRAIN]
    for site in list(served.runner.sites):
        await site.stop()
    state.draining = True
    log.info("gateway.draining", in_flight=state.in_flight, timeout=timeout)
    idle = asyncio.ensure_future(state.wait_idle(timeout))
    waits: set[asyncio.Future[Any]] = {idle}
    if now is not None:
        waits.add(asyncio.ensure_future(now.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    if not idle.done() or idle.cancelled() or not idle.result():
        log.warning("gateway.drain_timeout", in_flight=state.in_flight)
