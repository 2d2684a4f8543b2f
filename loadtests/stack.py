"""The system under test: Postgres, SeaweedFS, the gateway (and MLflow) as child processes.

Every process is started here, kept by PID and stopped by PID. Postgres runs
with its production-like default (``durable=True``: fsync and synchronous
commit on). The gateway is ``artifact-gateway serve`` in a subprocess, so its
memory and CPU can be read from ``/proc`` like any other server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import psutil

from gateway.auth import mint_principal_token
from gateway.devstack import EmbeddedPostgres, EmbeddedSeaweedFS, free_port, stop_process
from gateway.migrate import migrate

ALL_SCOPES = ["artifacts:read", "artifacts:write", "artifacts:delete", "artifacts:admin"]
BUCKET = "artifacts"
REGION = "us-east-1"


class StackError(RuntimeError):
    """A process of the system under test did not start or died."""


@dataclass
class Secrets:
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(36))
    lease_key: str = field(default_factory=lambda: secrets.token_urlsafe(36))
    url_key: str = field(default_factory=lambda: secrets.token_urlsafe(36))
    s3_access_key_id: str = field(default_factory=lambda: "bench" + secrets.token_hex(6))
    s3_secret_access_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))


def _console_script(name: str) -> list[str]:
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(name)
    if found:
        return [found]
    raise StackError(f"`{name}` is not installed in this environment")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, its live descendants and the ones it reaped."""
    try:
        root = psutil.Process(pid)
        times = root.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0.0
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = child.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


def own_cpu_seconds() -> float:
    """CPU of this process (all threads), without its reaped children (the servers)."""
    times = psutil.Process().cpu_times()
    return times.user + times.system


def _minor_faults(pid: int) -> int:
    """Minor page faults of a process and of the children it reaped (/proc/PID/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[7]) + int(fields[8])  # minflt, cminflt


def tree_minor_faults(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        pids = [pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.NoSuchProcess:
        return 0
    return sum(_minor_faults(p) for p in pids)


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


def tree_memory(pid: int) -> dict[str, int]:
    """RSS, PSS and USS summed over a process tree (PSS counts shared pages once)."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    out = {"processes": 0, "rss": 0, "pss": 0, "uss": 0}
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            info = proc.memory_full_info()
            out["processes"] += 1
            out["rss"] += info.rss
            out["pss"] += info.pss
            out["uss"] += info.uss
    return out


class RssSampler:
    """Samples a process tree's RSS every ``interval`` seconds in a thread; keeps the peak.

    Bounded: it stops by itself after ``max_seconds`` even if never stopped.
    """

    def __init__(self, pid: int, interval: float = 0.05, max_seconds: float = 1800):
        self.pid = pid
        self.interval = interval
        self.max_seconds = max_seconds
        self.baseline = tree_rss(pid)
        self.peak = self.baseline
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            rss = tree_rss(self.pid)
            self.samples += 1
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass
class Server:
    """A server child process listening on ``base_url``."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise StackError(
                        f"{self.name} exited with status {self.process.returncode}:\n"
                        + self.log_tail()
                    )
                try:
                    async with session.get(
                        self.base_url + path, timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            return
                        last = f"HTTP {resp.status}"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    last = type(exc).__name__
                await asyncio.sleep(0.1)
        raise StackError(f"{self.name} was not ready within {timeout:.0f}s ({last})")

    async def stop(self, timeout: float = 20) -> None:
        await asyncio.to_thread(stop_process, self.process, signal.SIGTERM, timeout)
        self.log.close()


class Stack:
    """Postgres + SeaweedFS in ``root``, and the servers measured against them."""

    def __init__(
        self, root: Path, *, volume_size_limit_mb: int = 1024, gateway_workers: int | None = None
    ):
        self.root = root
        self.gateway_workers = gateway_workers
        self.secrets = Secrets()
        self.volume_size_limit_mb = volume_size_limit_mb
        self.postgres: EmbeddedPostgres | None = None
        self.seaweedfs: EmbeddedSeaweedFS | None = None
        self.gateway: Server | None = None
        self.mlflow: Server | None = None
        self._gateway_starts = 0

    # -- backends -----------------------------------------------------------------------------

    def start_backends(self) -> None:
        self.postgres = EmbeddedPostgres(self.root, database="gateway_bench", durable=True).start()
        self.seaweedfs = EmbeddedSeaweedFS(
            self.root,
            access_key_id=self.secrets.s3_access_key_id,
            secret_access_key=self.secrets.s3_secret_access_key,
            bucket=BUCKET,
            volume_size_limit_mb=self.volume_size_limit_mb,
        ).start()
        asyncio.run(migrate(self.database_url))

    @property
    def database_url(self) -> str:
        assert self.postgres is not None
        return self.postgres.url()

    @property
    def s3_endpoint_url(self) -> str:
        assert self.seaweedfs is not None
        return self.seaweedfs.endpoint_url

    @property
    def master_url(self) -> str:
        assert self.seaweedfs is not None
        return f"http://127.0.0.1:{self.seaweedfs.master_port}"

    # -- tokens -------------------------------------------------------------------------------

    def token(self, sub: str, scopes: list[str], ttl: int = 6 * 3600) -> str:
        return mint_principal_token(
            secret=self.secrets.jwt_secret.encode(),
            sub=sub,
            scopes=scopes,
            projects=["*"],
            issuer="mobius",
            audience="mobius-artifacts",
            ttl_seconds=ttl,
        )

    # -- the gateway --------------------------------------------------------------------------

    def gateway_env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update(
            {
                "GATEWAY_HOST": "127.0.0.1",
                "GATEWAY_PORT": str(port),
                "GATEWAY_DATABASE_URL": self.database_url,
                "GATEWAY_S3_ENDPOINT_URL": self.s3_endpoint_url,
                "GATEWAY_S3_BUCKET": BUCKET,
                "GATEWAY_S3_REGION": REGION,
                "GATEWAY_S3_ACCESS_KEY_ID": self.secrets.s3_access_key_id,
                "GATEWAY_S3_SECRET_ACCESS_KEY": self.secrets.s3_secret_access_key,
                "GATEWAY_AUTH_JWT_SECRET": self.secrets.jwt_secret,
                "GATEWAY_LEASE_SIGNING_KEY": f"lease-1:{self.secrets.lease_key}",
                "GATEWAY_URL_SIGNING_KEYS": f"url-1:{self.secrets.url_key}",
                "GATEWAY_DEFAULT_QUOTA_BYTES": str(1 << 50),
                "GATEWAY_DEFAULT_QUOTA_ARTIFACTS": str(1 << 50),
                "GATEWAY_LOG_LEVEL": "warning",
                "GATEWAY_DATA_DIR": str(self.root / "gateway-data"),
            }
        )
        return env

    def _spawn(
        self,
        name: str,
        args: list[str],
        *,
        env: dict[str, str],
        port: int,
        log_name: str,
        cwd: Path | None = None,
    ) -> Server:
        """Start a server child in its own session, its output in ``root/log_name``."""
        log_path = self.root / log_name
        log = log_path.open("wb")
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        return Server(name, proc, f"http://127.0.0.1:{port}", log_path, log)

    async def start_gateway(self) -> Server:
        port = free_port()
        self._gateway_starts += 1
        server = self._spawn(
            "gateway",
            [*_console_script("artifact-gateway"), "serve", *self._worker_args()],
            env=self.gateway_env(port),
            port=port,
            log_name=f"gateway-{self._gateway_starts}.log",
        )
        self.gateway = server
        await server.wait_ready("/readyz", timeout=60)
        return server

    def _worker_args(self) -> list[str]:
        if self.gateway_workers is None:
            return []  # the gateway's own default
        return ["--workers", str(self.gateway_workers)]

    async def restart_gateway(self) -> Server:
        if self.gateway is not None:
            await self.gateway.stop()
        return await self.start_gateway()

    # -- MLflow (the peer) --------------------------------------------------------------------

    async def start_mlflow(self, workers: int | None = None) -> Server:
        port = free_port()
        home = self.root / "mlflow"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "AWS_"))}
        env.update(
            {
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
                "AWS_ACCESS_KEY_ID": self.secrets.s3_access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secrets.s3_secret_access_key,
                "AWS_DEFAULT_REGION": REGION,
                "MLFLOW_TRACKING_DIR": str(home),
                "TMPDIR": str(home),
            }
        )
        args = [
            *_console_script("mlflow"),
            "server",
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://{BUCKET}/mlflow",
            "--backend-store-uri",
            f"sqlite:///{home / 'mlflow.db'}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if workers is not None:
            args += ["--workers", str(workers)]
        server = self._spawn("mlflow", args, env=env, port=port, log_name="mlflow.log", cwd=home)
        self.mlflow = server
        await server.wait_ready("/health", timeout=120)
        return server

    async def stop_mlflow(self) -> None:
        if self.mlflow is not None:
            await self.mlflow.stop()
            self.mlflow = None

    # -- accounting ---------------------------------------------------------------------------

    def processes(self) -> dict[str, int]:
        """PIDs of the measured processes (roots of their trees)."""
        pids: dict[str, int] = {}
        if self.gateway is not None and self.gateway.process.poll() is None:
            pids["gateway"] = self.gateway.pid
        if self.postgres is not None and self.postgres.process is not None:
            pids["postgres"] = self.postgres.process.pid
        if self.seaweedfs is not None and self.seaweedfs.process is not None:
            pids["weed"] = self.seaweedfs.process.pid
        if self.mlflow is not None and self.mlflow.process.poll() is None:
            pids["mlflow"] = self.mlflow.pid
        return pids

    def cpu_snapshot(self) -> dict[str, tuple[int, float]]:
        """CPU seconds so far of each measured process, and of the whole machine.

        ``machine`` is every core's busy time (anything but idle, iowait and
        steal) and ``steal`` the time the hypervisor took away: :func:`cpu_delta`
        reports the busy time of processes outside the benchmark as ``other``.
        """
        snap = {name: (pid, tree_cpu_seconds(pid)) for name, pid in self.processes().items()}
        snap["loadgen"] = (os.getpid(), own_cpu_seconds())
        times = psutil.cpu_times()
        idle = times.idle + getattr(times, "iowait", 0.0) + getattr(times, "steal", 0.0)
        total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
        snap["machine"] = (0, total - idle)
        snap["steal"] = (0, getattr(times, "steal", 0.0))
        return snap

    # -- shutdown -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything started here, by PID, in reverse order."""
        for server in (self.mlflow, self.gateway):
            if server is not None:
                stop_process(server.process, signal.SIGTERM, 20)
                with contextlib.suppress(Exception):
                    server.log.close()
        self.mlflow = self.gateway = None
        if self.seaweedfs is not None:
            self.seaweedfs.stop(timeout=2)  # its data is thrown away
            self.seaweedfs = None
        if self.postgres is not None:
            self.postgres.stop()
            self.postgres = None


def cpu_delta(
    before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]]
) -> dict[str, float]:
    """CPU seconds each process used between two snapshots (same PID only)."""
    out: dict[str, float] = {}
    for name, (pid, seconds) in after.items():
        start = before.get(name)
        if start is not None and start[0] == pid:
            out[name] = round(max(0.0, seconds - start[1]), 3)
    machine = out.pop("machine", None)
    if machine is not None:
        ours = sum(v for k, v in out.items() if k != "steal")
        out["other"] = round(max(0.0, machine - ours), 3)
    return out


def add_cpu(total: dict[str, float], more: dict[str, float]) -> None:
    for name, seconds in more.items():
        total[name] = round(total.get(name, 0.0) + seconds, 3)


class Profiler:
    """``py-spy record`` attached to a process, sampling without pausing it.

    Writes collapsed stacks (one ``frame;frame;... count`` line per stack) to
    ``out``; :func:`loadtests.profiles.summarize` reads them.
    """

    def __init__(self, pid: int, out: Path, rate: int = 100):
        self.pid = pid
        self.out = out
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        try:
            _console_script("py-spy")
        except StackError:
            return False
        return True

    def __enter__(self) -> Profiler:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                *_console_script("py-spy"),
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--nonblocking",
                "--subprocesses",
                "--output",
                str(self.out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process, signal.SIGINT, 30)
