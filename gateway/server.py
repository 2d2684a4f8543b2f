"""Running the gateway: one worker process, or a supervisor of N sharing the port.

Each worker binds the listen address with ``SO_REUSEPORT`` so the kernel spreads
connections across them. On SIGTERM or SIGINT a worker stops accepting, lets
requests in flight (uploads included) finish for up to
``GATEWAY_SHUTDOWN_TIMEOUT_SECONDS``, cancels the rest — a cancelled publish
aborts its upload and publishes nothing — and closes its pools.

The supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before starting workers (so
metrics aggregate across them), forwards stop signals, and restarts a worker
that dies unexpectedly. This module imports nothing that creates metrics at
import time, so the supervisor can set the directory first.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from multiprocessing.process import BaseProcess
from typing import Any

from gateway.config import Config

RESTART_BACKOFF_SECONDS = 1.0
CANCEL_AFTER_DRAIN_SECONDS = 1.0


async def run_worker(config: Config, *, ready: Any = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and clean up."""
    from aiohttp import web

    from gateway.api.ops import metrics_app
    from gateway.api.protocol import GatewayRunner
    from gateway.app import create_app
    from gateway.logs import get_logger

    log = get_logger("gateway.server")
    app = create_app(config)
    # The drain below does the waiting; what the runner finds still running is cancelled.
    # keepalive_timeout also bounds how long a new connection may take to send a
    # complete request head: slow-drip headers are cut off after it.
    runner = GatewayRunner(
        app,
        access_log=None,
        shutdown_timeout=CANCEL_AFTER_DRAIN_SECONDS,
        keepalive_timeout=config.keepalive_timeout_seconds,
    )
    await runner.setup()
    runners: list[web.AppRunner] = [runner]
    await web.TCPSite(runner, config.host, config.port, reuse_port=True, backlog=1024).start()
    if config.metrics_port is not None:
        side = web.AppRunner(metrics_app(), access_log=None, shutdown_timeout=1)
        await side.setup()
        await web.TCPSite(side, config.host, config.metrics_port, reuse_port=True).start()
        runners.append(side)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("gateway.listening", host=config.host, port=config.port, pid=os.getpid())
    if ready is not None:
        ready.set()
    await stop.wait()
    await drain(app, runner, config.shutdown_timeout_seconds)
    for r in reversed(runners):
        await r.cleanup()
    log.info("gateway.stopped")


async def drain(app: Any, runner: Any, timeout: float) -> None:
    """Stop accepting, then let requests in flight finish for up to ``timeout`` seconds.

    aiohttp's own shutdown stops reading request bodies at once, which would cut
    every upload in flight; so the listening sockets close first, new requests on
    open connections get ``503`` with ``Connection: close``, and only what is still
    running after ``timeout`` is cancelled by the runner's cleanup (a cancelled
    publish aborts its upload and publishes nothing).
    """
    from gateway.logs import get_logger
    from gateway.state import DRAIN

    log = get_logger("gateway.server")
    state = app[DRAIN]
    for site in list(runner.sites):
        await site.stop()
    state.draining = True
    log.info("gateway.draining", in_flight=state.in_flight, timeout=timeout)
    if not await state.wait_idle(timeout):
        log.warning("gateway.drain_timeout", in_flight=state.in_flight)


def _worker_main(config: Config) -> None:
    from gateway.logs import configure_logging

    configure_logging(config.log_level, config.log_format)
    asyncio.run(run_worker(config))


def serve(config: Config, workers: int) -> None:
    if workers <= 1:
        _worker_main(config)
        return
    _supervise(config, workers)


def _supervise(config: Config, workers: int) -> None:
    own_dir = None
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = tempfile.mkdtemp(prefix="gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
    context = multiprocessing.get_context("spawn")
    stopping = False
    # The buffer budget is the instance's: each worker gets its share.
    share = max(config.s3_part_size, config.s3_buffer_budget_bytes // workers)
    worker_config = config.with_overrides(s3_buffer_budget_bytes=share)

    def start() -> BaseProcess:
        process = context.Process(target=_worker_main, args=(worker_config,), daemon=False)
        process.start()
        return process

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in procs:
            if process.pid is not None and process.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)

    procs = [start() for _ in range(workers)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stopping:
            time.sleep(0.2)
            for i, process in enumerate(procs):
                if not process.is_alive() and not stopping:
                    _forget(process)
                    time.sleep(RESTART_BACKOFF_SECONDS)
                    procs[i] = start()
        deadline = time.monotonic() + config.shutdown_timeout_seconds + 10
        for process in procs:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(5)
    finally:
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _forget(process: BaseProcess) -> None:
    from gateway.metrics import mark_worker_dead

    if process.pid is not None:
        mark_worker_dead(process.pid)
