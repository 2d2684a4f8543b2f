"""Running the gateway: one worker process, or a supervisor of N sharing the port.

The listen address (and the metrics address) is bound once, without
``SO_REUSEPORT``, before any worker starts: an address another process holds
fails at once with :class:`ListenError` instead of silently sharing the port.
The workers accept on that one listening socket, handed to each at its start.
On SIGTERM or SIGINT a worker closes its own copy of the socket (the others keep
accepting), lets requests in flight (uploads included) finish for up to
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
import errno
import math
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from gateway.config import Config

RESTART_BACKOFF_SECONDS = 1.0
BACKLOG = 1024
METRICS_BACKLOG = 128


CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """The CPUs this process may use: the default of ``serve --workers``.

    The CPUs of its affinity mask (``taskset``, a cpuset), else all of them,
    capped by a cgroup CPU quota (a container's CPU limit), rounded up; at least 1.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity mask on this platform
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_self_cgroup)
    if quota is not None:
        cpus = min(cpus, quota)
    return max(1, cpus)


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP
) -> int | None:
    """Whole CPUs the cgroup CPU quota allows (rounded up), None when unlimited or unknown.

    cgroup v2 (``cpu.max``: ``max 100000`` is no limit, ``200000 100000`` is 2 CPUs)
    and v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, -1 is no limit), in this
    process's cgroup (from ``/proc/self/cgroup``) and each of its ancestors, the
    tightest one winning. In a container whose cgroup is mounted as the root, the
    root's own files are the container's limit.
    """
    v2_path = "/"
    v1: list[tuple[str, str]] = []
    try:
        lines = proc_self_cgroup.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1.append((controllers, path))
    if not v1:
        v1 = [("cpu", "/")]
    limits = [_v2_limit(folder) for folder in _folders(cgroup_root, v2_path)]
    for controllers, path in v1:
        for mount in dict.fromkeys([controllers, "cpu", "cpu,cpuacct"]):
            limits.extend(_v1_limit(folder) for folder in _folders(cgroup_root / mount, path))
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _folders(mount: Path, path: str) -> list[Path]:
    """The cgroup folder of ``path`` under ``mount`` and its ancestors up to ``mount``."""
    leaf = mount.joinpath(*[part for part in path.split("/") if part not in ("", ".", "..")])
    return [leaf, *[folder for folder in leaf.parents if folder.is_relative_to(mount)]]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpus(quota: str, period: str) -> int | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # "-1" in v1: no limit
        return None
    return max(1, math.ceil(q / p))


def _v2_limit(folder: Path) -> int | None:
    text = _read(folder / "cpu.max")
    if not text:
        return None
    fields = text.split()
    if fields[0] == "max":
        return None
    return _cpus(fields[0], fields[1] if len(fields) > 1 else "100000")


def _v1_limit(folder: Path) -> int | None:
    quota = _read(folder / "cpu.cfs_quota_us")
    period = _read(folder / "cpu.cfs_period_us")
    if quota is None or period is None:
        return None
    return _cpus(quota, period)


class ListenError(Exception):
    """The listen address could not be bound (taken, not local, not permitted).

    The message names the variable to change and, for a port in use, a port free now.
    """


@dataclass
class Listeners:
    """The listening sockets of one gateway, bound once and shared by its workers.

    Pickled into a worker started with ``spawn``, each socket travels as a
    duplicate of its descriptor: the worker accepts on the same socket.
    """

    main: list[socket.socket]
    metrics: list[socket.socket] = field(default_factory=list)

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose for GATEWAY_PORT=0)."""
        bound: int = self.main[0].getsockname()[1]
        return bound

    def close(self) -> None:
        for sock in [*self.main, *self.metrics]:
            sock.close()


def listen(config: Config) -> Listeners:
    """Bind and listen on the configured address and metrics address, or raise ListenError."""
    avoid = {p for p in (config.port, config.metrics_port) if p}
    main = bind(config.host, config.port, backlog=BACKLOG, variable="GATEWAY_PORT", avoid=avoid)
    if config.metrics_port is None:
        return Listeners(main)
    try:
        metrics = bind(
            config.host,
            config.metrics_port,
            backlog=METRICS_BACKLOG,
            variable="GATEWAY_METRICS_PORT",
            avoid=avoid,
        )
    except ListenError:
        Listeners(main).close()
        raise
    return Listeners(main, metrics)


def bind(
    host: str,
    port: int,
    *,
    backlog: int,
    variable: str = "GATEWAY_PORT",
    avoid: Collection[int] = (),
) -> list[socket.socket]:
    """Listening sockets for every address ``host`` resolves to, without SO_REUSEPORT.

    ``SO_REUSEADDR`` only lets a restart bind over connections in TIME_WAIT; a
    port another socket listens on fails with ``EADDRINUSE``, and the
    :class:`ListenError` names ``variable`` and a port free now (none of ``avoid``).
    """
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise ListenError(f"cannot listen on {shown}: {_reason(exc)}; check GATEWAY_HOST") from None
    try:
        return _bind_all(infos, backlog)
    except OSError as exc:
        hint = "check GATEWAY_HOST"
        if exc.errno == errno.EADDRINUSE:
            free = free_port_near(host, port, avoid={port, *avoid})
            hint = f"set {variable}={free} (free now) or stop what holds it"
        elif exc.errno == errno.EACCES:
            hint = f"ports below 1024 need privileges: set {variable} to a higher port"
        raise ListenError(f"cannot listen on {shown}: {_reason(exc)}; {hint}") from None


def free_port_near(host: str, port: int, *, avoid: Collection[int] = ()) -> int:
    """The first port after ``port`` that ``host`` can listen on now (else any free one)."""
    try:
        infos = socket.getaddrinfo(
            host or None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError:
        infos = []
    for candidate in [*range(port + 1, min(port + 100, 65536)), 0]:
        if candidate in avoid:
            continue
        moved = [(*info[:4], _with_port(info[4], candidate)) for info in infos]
        try:
            sockets = _bind_all(moved, 1)
        except OSError:
            continue
        chosen: int = sockets[0].getsockname()[1]
        for sock in sockets:
            sock.close()
        return chosen
    return 0


def _with_port(address: Any, port: int) -> Any:
    return (address[0], port, *address[2:])


def _bind_all(infos: Sequence[Any], backlog: int) -> list[socket.socket]:
    sockets: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


async def run_worker(config: Config, listeners: Listeners, *, announce: bool = False) -> bool:
    """Serve on ``listeners`` until SIGTERM/SIGINT, then drain and clean up.

    A second SIGINT while draining (Ctrl-C again) stops waiting: what is still in
    flight is cancelled at once, and the result is True. With ``announce``
    (``dev``) the stop is told in words on stdout.
    """
    from gateway.api.serving import drain, serve_on
    from gateway.api.state import DRAIN
    from gateway.app import create_app
    from gateway.logs import get_logger

    log = get_logger("gateway.server")
    served = await serve_on(
        create_app(config),
        config,
        listeners.main,
        listeners.metrics,
        backlog=BACKLOG,
        metrics_backlog=METRICS_BACKLOG,
    )
    stop = asyncio.Event()
    now = asyncio.Event()
    state = served.app[DRAIN]

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            stop.set()
        elif signum == signal.SIGINT and not now.is_set():
            now.set()
            if announce:
                _say(f"stopping now: cancelling {_requests(state.in_flight)} in flight")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    log.info("gateway.listening", host=config.host, port=listeners.port, pid=os.getpid())
    await stop.wait()
    if announce:
        timeout = config.shutdown_timeout_seconds
        if state.in_flight:
            _say(
                f"stopping: finishing {_requests(state.in_flight)} in flight, at most "
                f"{timeout:g} s; press Ctrl-C again to stop now"
            )
        else:
            _say("stopping: no requests in flight")
    await drain(served, config.shutdown_timeout_seconds, now)
    await served.cleanup()
    log.info("gateway.stopped")
    return now.is_set()


def _requests(count: int) -> str:
    return f"{count} request{'' if count == 1 else 's'}"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _worker_main(config: Config, listeners: Listeners, announce: bool = False) -> bool:
    from gateway.logs import configure_logging

    configure_logging(config.log_level, config.log_format, colors=not config.no_color)
    return asyncio.run(run_worker(config, listeners, announce=announce))


def serve(
    config: Config, workers: int, listeners: Listeners | None = None, *, announce: bool = False
) -> bool:
    """Serve with ``workers`` processes on ``listeners`` (bound here when not given).

    ``announce`` (one worker, in this process) tells a stop in words on stdout.
    True when a second Ctrl-C cut the drain short (one worker). Raises
    :class:`ListenError` when the address cannot be bound.
    """
    if listeners is None:
        listeners = listen(config)
    try:
        if workers <= 1:
            return _worker_main(config, listeners, announce)
        _supervise(config, workers, listeners)
        return False
    finally:
        listeners.close()


def _supervise(config: Config, workers: int, listeners: Listeners) -> None:
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
        # Each worker receives duplicates of the listening sockets' descriptors.
        process = context.Process(
            target=_worker_main, args=(worker_config, listeners), daemon=False
        )
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
                    if stopping:  # asked to stop during the back-off
                        break
                    procs[i] = start()
        # No worker starts any more: once the draining workers have closed their
        # copies, the port refuses new connections.
        listeners.close()
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
