"""The ``mobius-artifacts`` command line as subprocesses against a served gateway; the
same subcommands of ``artifact-gateway``; ``artifact-gateway token``."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.devstack import free_port
from tests.conftest import ALL_SCOPES, principal_token
from tests.e2e.test_serve import Gateway, serve
from tests.helpers import ADMIN, SCHEDULER

pytestmark = pytest.mark.timeout(90)
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLIENT = str(BIN / "mobius-artifacts")
SERVER = str(BIN / "artifact-gateway")


@pytest.fixture(scope="module")
def gateway(backends: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serve(backends, tmp_path_factory.mktemp("client-cli")) as gw:
        yield gw


def call(gw: Gateway, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    request = urllib.request.Request(
        gw.base + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={**headers, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def new_lease(gw: Gateway, project: str) -> dict[str, Any]:
    body = {
        "run_id": "run_cli",
        "step_id": "s",
        "job_id": f"job_{time.time_ns()}",
        "attempt": 1,
        "worker_session_id": "ws_cli",
    }
    result: dict[str, Any] = call(gw, "POST", f"/v1/projects/{project}/claims", body, SCHEDULER)
    return result


def environ(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOBIUS_", "GATEWAY_"))}
    return env | values


def cli(
    *args: str, env: dict[str, str], cwd: Path = REPO, command: str = CLIENT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [command, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(*args: str, env: dict[str, str], cwd: Path = REPO, command: str = CLIENT) -> str:
    result = cli(*args, env=env, cwd=cwd, command=command)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
    return result.stdout


def failing(
    status: int,
    code: str,
    *args: str,
    env: dict[str, str],
    cwd: Path = REPO,
    command: str = CLIENT,
) -> str:
    result = cli(*args, env=env, cwd=cwd, command=command)
    assert result.returncode == status, (result.returncode, result.stdout, result.stderr)
    line = result.stderr.strip()
    prog = Path(command).name
    assert "\n" not in line and line.startswith(f"{prog}: {code}"), line
    return line


def usage_error(*args: str, env: dict[str, str], cwd: Path = REPO, command: str = CLIENT) -> str:
    result = cli(*args, env=env, cwd=cwd, command=command)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "error:" in result.stderr and result.stdout == ""
    return result.stderr


@pytest.fixture
def project() -> str:
    return "cli-" + secrets.token_hex(5)


@pytest.fixture
def env(gateway: Gateway, project: str) -> dict[str, str]:
    """A worker's and a reader's environment together: lease, principal token, project."""
    return environ(
        MOBIUS_ARTIFACTS_URL=gateway.base,
        MOBIUS_LEASE_TOKEN=new_lease(gateway, project)["lease_token"],
        MOBIUS_ARTIFACTS_TOKEN=principal_token("user:ops", ALL_SCOPES, projects=[project]),
        MOBIUS_PROJECT=project,
    )


def test_round_trip(gateway: Gateway, project: str, env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("alpha\n")
    (tmp_path / "b.bin").write_bytes(os.urandom(300_000))
    lines = ok(
        "publish",
        str(tmp_path / "a.txt"),
        str(tmp_path / "b.bin"),
        "--metadata",
        '{"suite": "cli"}',
        env=env,
    ).splitlines()
    a, b = (json.loads(line) for line in lines)
    assert (a["name"], a["size"], a["project"]) == ("a.txt", 6, project)
    assert b["name"] == "b.bin" and b["size"] == 300_000

    table = ok("ls", env=env).splitlines()
    assert table[0].split()[:2] == ["ID", "SIZE"]
    assert [row.split()[0] for row in table[1:]] == [b["id"], a["id"]]  # newest first
    assert "a.txt" in table[2] and "run:run_cli" in table[2]
    listed = [
        json.loads(line) for line in ok("ls", "--json", "--name-prefix", "a", env=env).splitlines()
    ]
    assert [(x["id"], x["metadata"]) for x in listed] == [(a["id"], {"suite": "cli"})]
    assert ok("ls", "--run-id", "run_cli", "--limit", "1", env=env).count("\n") == 2

    out = tmp_path / "out"
    out.mkdir()
    written = ok("download", b["id"], "-o", str(out), env=env).strip()
    assert written == str(out / "b.bin")
    assert (out / "b.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()

    url = ok("url", a["id"], "--expires-in", "60", env=env).strip()
    assert url.startswith(f"{gateway.base}/v1/projects/{project}/artifacts/{a['id']}/content?")
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"alpha\n"

    assert ok("rm", a["id"], env=env) == ""
    assert a["id"] not in ok("ls", env=env)
    assert ok("quota", env=env).startswith(f"{project}: 293.0 KiB of ")
    quota = json.loads(ok("quota", "--json", env=env))
    assert (quota["artifact_count"], quota["limit_artifacts"]) == (1, 1_000_000)
    assert "1 of 1000000 artifacts" in ok("quota", env=env)

    events = [json.loads(x) for x in ok("watch", "--count", "3", "--json", env=env).splitlines()]
    assert [(e["type"], e["artifact"]["id"]) for e in events] == [
        ("artifact.created", a["id"]),
        ("artifact.created", b["id"]),
        ("artifact.deleted", a["id"]),
    ]
    after = str(events[1]["seq"])
    assert ok("watch", "--after", after, "--count", "1", env=env).split()[1] == "artifact.deleted"

    typed = json.loads(
        ok("publish", str(tmp_path / "a.txt"), "--name", "t.txt", "--artifact-type", "log", env=env)
    )
    listed = ok("ls", "--json", "--artifact-type", "log", env=env).splitlines()
    assert [json.loads(line)["id"] for line in listed] == [typed["id"]]


def test_exit_codes(gateway: Gateway, project: str, env: dict[str, str], tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text("x" * 100)
    published = json.loads(ok("publish", str(small), env=env))

    # 3: authentication and authorisation, lease errors included
    failing(3, "unauthenticated", "quota", "--token", "not-a-token", env=env)
    other = principal_token("user:eve", "artifacts:read", projects=[project])
    failing(3, "forbidden", "rm", published["id"], "--token", other, env=env)
    lease = new_lease(gateway, project)
    call(gateway, "DELETE", f"/v1/projects/{project}/claims/{lease['lease_id']}", None, SCHEDULER)
    failing(
        3, "lease_inactive", "publish", str(small), "--lease-token", lease["lease_token"], env=env
    )

    # 4: quota and size
    call(gateway, "PUT", f"/v1/projects/{project}/quota", {"limit_bytes": 10}, ADMIN)
    line = failing(4, "quota_exceeded", "publish", str(small), env=env)
    assert "100" in line

    # 2: usage and configuration
    usage_error("publish", env=env)
    usage_error("ls", "--limit", "many", env=env)
    usage_error("publish", str(small), "--metadata", "[1]", env=env)
    failing(2, "usage", "publish", str(small), str(small), "--name", "x", env=env)
    failing(2, "configuration_error", "quota", env=environ(MOBIUS_PROJECT=project))
    failing(2, "configuration_error", "quota", env=environ(MOBIUS_ARTIFACTS_URL=gateway.base))
    missing = str(tmp_path / "missing-ca.pem")
    line = failing(2, "configuration_error", "quota", "--ca-bundle", missing, env=env)
    assert "CA bundle" in line and missing in line

    # 5: unavailable after retries
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    line = failing(5, "unavailable", "quota", "--url", closed, "--retries", "0", env=env)
    assert closed in line and time.monotonic() - started < 15

    # 1: anything else
    failing(1, "not_found", "download", "art_" + "0" * 26, "-o", str(tmp_path), env=env)
    failing(1, "file_not_found", "publish", str(tmp_path / "missing.txt"), env=env)


def on_a_terminal(*args: str, env: dict[str, str]) -> tuple[int, bytes, bytes]:
    """Run the client with stderr on a pseudo-terminal: its status, stdout and what the
    terminal showed."""
    import fcntl
    import pty
    import struct
    import termios

    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(follower, "wb", closefd=True) as terminal:
        result = subprocess.run(
            [CLIENT, *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
            check=False,
        )
    drawn = b""
    os.set_blocking(leader, False)
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(leader, 65536):
            drawn += chunk
    os.close(leader)
    return result.returncode, result.stdout, drawn


def test_progress_bar_on_a_terminal_above_the_threshold(
    env: dict[str, str], tmp_path: Path
) -> None:
    from mobius_artifacts.cli import PROGRESS_MIN_BYTES

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(PROGRESS_MIN_BYTES + 2 * 1024 * 1024))
    status, out, drawn = on_a_terminal("publish", str(big), env=env)
    assert status == 0
    ref = json.loads(out)
    assert ref["size"] == big.stat().st_size
    assert b"big.bin:" in drawn and b"%|" in drawn  # the bar, on stderr only
    copy = tmp_path / "copy.bin"
    status, out, drawn = on_a_terminal("download", ref["id"], "-o", str(copy), env=env)
    assert status == 0 and out.decode().strip() == str(copy)
    assert ref["id"].encode() + b":" in drawn and b"%|" in drawn
    assert copy.read_bytes() == big.read_bytes()

    # --no-progress, before or after the subcommand: nothing on the terminal
    for args in (["--no-progress", "publish", str(big)], ["publish", str(big), "--no-progress"]):
        status, out, drawn = on_a_terminal(*args, env=env)
        assert status == 0 and json.loads(out)["size"] == big.stat().st_size
        assert drawn == b""
    # below the threshold: over before a bar would say anything
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(PROGRESS_MIN_BYTES // 2))
    status, out, drawn = on_a_terminal("publish", str(small), env=env)
    assert status == 0 and drawn == b""
    # stderr a pipe: nothing on it, whatever the size
    result = cli("publish", str(big), env=env)
    assert result.returncode == 0 and result.stderr == ""
    result = cli("download", ref["id"], "-o", str(tmp_path / "piped.bin"), env=env)
    assert result.returncode == 0 and result.stderr == ""


def test_download_keeps_a_file_of_the_same_name_unless_forced(
    env: dict[str, str], tmp_path: Path
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("published\n")
    artifact_id = json.loads(ok("publish", str(source), env=env))["id"]
    here = tmp_path / "here"
    here.mkdir()
    local = here / "notes.txt"
    local.write_text("mine\n")

    for where in ([], ["-o", str(here)]):  # the name comes from the artifact
        line = failing(2, "file_exists", "download", artifact_id, *where, env=env, cwd=here)
        assert str(local) in line and "--force" in line
        assert local.read_text() == "mine\n"
        assert sorted(p.name for p in here.iterdir()) == ["notes.txt"]  # no partial file

    assert ok("download", artifact_id, "--force", env=env, cwd=here).strip() == str(local)
    assert local.read_text() == "published\n"
    local.write_text("mine\n")
    # an explicit file path is the user's choice
    assert ok("download", artifact_id, "-o", str(local), env=env, cwd=here).strip() == str(local)
    assert local.read_text() == "published\n"
    # nothing in the way: no --force needed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    written = ok("download", artifact_id, env=env, cwd=elsewhere).strip()
    assert written == str(elsewhere / "notes.txt")


def test_publish_checks_every_file_before_publishing_any(
    env: dict[str, str], tmp_path: Path
) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine\n")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cases = [
        ("file_not_found", tmp_path / "missing.txt"),
        ("not_a_file", tmp_path),
        ("not_a_file", fifo),  # would block a reader forever
    ]
    for code, bad in cases:
        line = failing(1, code, "publish", str(good), str(bad), env=env)
        assert str(bad) in line
    assert ok("ls", "--json", env=env) == ""  # not even the good file was published


def test_token_from_any_directory(tmp_path: Path) -> None:
    import jwt

    from gateway.devstack import load_or_create_secrets

    secret = load_or_create_secrets(tmp_path / "checkout" / ".gateway-data")["auth_jwt_secret"]
    nested = tmp_path / "checkout" / "src" / "deep"
    nested.mkdir(parents=True)

    def claims(token: str) -> dict[str, Any]:
        decoded: dict[str, Any] = jwt.decode(
            token.strip(), secret, algorithms=["HS256"], audience="mobius-artifacts"
        )
        return decoded

    # anywhere in the checkout: the nearest .gateway-data, as `make run` leaves it
    token = ok(
        "token", "--sub", "user:a", "--ttl", "120", env=environ(), cwd=nested, command=SERVER
    )
    decoded = claims(token)
    assert decoded["sub"] == "user:a" and decoded["exp"] - decoded["iat"] == 120
    # anywhere at all with GATEWAY_DATA_DIR
    outside = tmp_path / "outside"
    outside.mkdir()
    data_dir = environ(GATEWAY_DATA_DIR=str(tmp_path / "checkout" / ".gateway-data"))
    token = ok("token", "--sub", "user:b", env=data_dir, cwd=outside, command=SERVER)
    assert claims(token)["sub"] == "user:b"
    # nothing to sign with: one line saying what to set
    for env, where in (
        (environ(), ".gateway-data/secrets.json here or in a parent folder"),
        (environ(GATEWAY_DATA_DIR=str(outside)), str(outside / "secrets.json")),
    ):
        result = cli("token", "--sub", "user:c", env=env, cwd=outside, command=SERVER)
        assert result.returncode == 2 and result.stdout == ""
        line = result.stderr.strip()
        assert "\n" not in line and line.startswith("artifact-gateway: no secret to sign with")
        assert "GATEWAY_AUTH_JWT_SECRET" in line and "GATEWAY_DATA_DIR" in line
        assert where in line
    # a lifetime must be positive
    for ttl in ("0", "-5"):
        stderr = usage_error(
            "token", "--sub", "user:d", "--ttl", ttl, env=environ(), cwd=nested, command=SERVER
        )
        assert "--ttl: must be a positive number of seconds" in stderr


def test_artifact_gateway_carries_the_client_commands(
    env: dict[str, str], project: str, tmp_path: Path
) -> None:
    """``artifact-gateway publish`` and friends still work, with their own name in errors."""
    source = tmp_path / "kept.txt"
    source.write_text("still here\n")
    ref = json.loads(ok("publish", str(source), env=env, command=SERVER))
    assert (ref["name"], ref["project"], ref["size"]) == ("kept.txt", project, 11)
    listed = [json.loads(line) for line in ok("ls", "--json", env=env, command=SERVER).splitlines()]
    assert [x["id"] for x in listed] == [ref["id"]]
    line = failing(
        1, "file_not_found", "publish", str(tmp_path / "missing"), env=env, command=SERVER
    )
    assert str(tmp_path / "missing") in line
    failing(2, "configuration_error", "quota", env=environ(MOBIUS_PROJECT=project), command=SERVER)
    help_text = ok("--help", env=env, command=SERVER)
    for name in ("dev", "serve", "token", "publish", "ls", "download", "url", "rm", "quota"):
        assert name in help_text


def test_every_error_line_carries_the_request_id(env: dict[str, str], tmp_path: Path) -> None:
    missing = "art_" + "0" * 26
    line = failing(1, "not_found", "download", missing, "-o", str(tmp_path), env=env)
    assert re.search(r" \(request id [\w-]+\)$", line), line
    # with --json: one JSON object on stderr, the gateway's request id in it
    for args in (["--json", "download", missing], ["url", missing, "--json"]):
        result = cli(*args, env=env)
        assert result.returncode == 1 and result.stdout == ""
        problem = json.loads(result.stderr)
        assert (problem["code"], problem["status"]) == ("not_found", 404)
        assert problem["request_id"] and problem["detail"]
    result = cli("--json", "quota", "--token", "not-a-token", env=env)
    assert result.returncode == 3
    assert json.loads(result.stderr)["code"] == "unauthenticated"
    assert json.loads(result.stderr)["request_id"]
    # errors of the client itself: no request id, and JSON too with --json
    result = cli("--json", "quota", env=environ(MOBIUS_PROJECT="p"))
    assert result.returncode == 2 and result.stdout == ""
    problem = json.loads(result.stderr)
    assert (problem["code"], problem["request_id"]) == ("configuration_error", None)
    result = cli("ls", "--limit", "many", "--json", env=env)
    assert result.returncode == 2
    assert json.loads(result.stderr)["code"] == "usage"


def test_json_on_every_command(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "j.txt"
    source.write_text("json\n")
    ref = json.loads(ok("--json", "publish", str(source), env=env))
    assert ref["name"] == "j.txt"
    (listed,) = (json.loads(line) for line in ok("ls", "--json", env=env).splitlines())
    assert listed["id"] == ref["id"]
    got = json.loads(ok("download", ref["id"], "-o", str(tmp_path / "c.txt"), "--json", env=env))
    assert got == {
        "path": str(tmp_path / "c.txt"),
        "id": ref["id"],
        "size": 5,
        "sha256": ref["sha256"],
    }
    signed = json.loads(ok("--json", "url", ref["id"], env=env))
    assert set(signed) == {"url", "expires_at"} and ref["id"] in signed["url"]
    assert json.loads(ok("--json", "quota", env=env))["artifact_count"] == 1
    assert json.loads(ok("rm", ref["id"], "--json", env=env)) == {
        "id": ref["id"],
        "state": "deleted",
    }
    events = ok("watch", "--count", "2", "--json", env=env).splitlines()
    assert [json.loads(e)["type"] for e in events] == ["artifact.created", "artifact.deleted"]


def test_global_options_before_or_after_the_subcommand(
    gateway: Gateway, project: str, env: dict[str, str]
) -> None:
    bare = environ()  # nothing from the environment: every option on the command line
    token = env["MOBIUS_ARTIFACTS_TOKEN"]
    options = ["--url", gateway.base, "--token", token, "--project", project, "--retries", "0"]
    for args in (
        [*options, "quota", "--json"],
        ["quota", *options, "--json"],
        ["--json", "--url", gateway.base, "quota", "--token", token, "--project", project],
    ):
        assert json.loads(ok(*args, env=bare))["project"] == project, args
    # an option after the subcommand wins over the same one before it
    wrong = f"http://127.0.0.1:{free_port()}"
    args = ["--url", wrong, "quota", "--url", gateway.base, "--token", token, "--project", project]
    assert ok(*args, env=bare).startswith(f"{project}: ")


def test_download_to_stdout_is_the_bytes_alone(env: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "raw.bin").write_bytes(data)
    ref = json.loads(ok("publish", str(tmp_path / "raw.bin"), env=env))
    for extra in ([], ["--json"]):
        result = subprocess.run(
            [CLIENT, "download", ref["id"], "-o", "-", *extra],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == data and result.stderr == b""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw.bin"]  # no file written


class WrongBytes(http.server.BaseHTTPRequestHandler):
    """Forwards GETs to the gateway; an artifact's content comes back with its last byte
    changed and without ``Repr-Digest``, so that only the sha256 of the whole tells."""

    upstream = ""

    def do_GET(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization",)}
        request = urllib.request.Request(self.upstream + self.path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                status, body, answer = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            status, body, answer = exc.code, exc.read(), dict(exc.headers)
        if self.path.split("?")[0].endswith("/content") and body:
            body = body[:-1] + bytes([body[-1] ^ 0xFF])
            answer.pop("Repr-Digest", None)
        self.send_response(status)
        for name, value in answer.items():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_download_to_stdout_that_fails_verification_exits_non_zero(
    gateway: Gateway, env: dict[str, str], tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    (tmp_path / "v.bin").write_bytes(data)
    ref = json.loads(ok("publish", str(tmp_path / "v.bin"), env=env))
    handler = type("Handler", (WrongBytes,), {"upstream": gateway.base})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        proxied = f"http://127.0.0.1:{server.server_address[1]}"
        result = subprocess.run(
            [CLIENT, "download", ref["id"], "-o", "-", "--url", proxied],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert result.returncode == 1
    assert len(result.stdout) == len(data)  # streamed before the end told it was wrong
    line = result.stderr.decode().strip()
    assert "\n" not in line and line.startswith("mobius-artifacts: digest_mismatch: "), line
    assert ref["id"] in line


def test_publish_with_an_idempotency_key(env: dict[str, str], tmp_path: Path) -> None:
    source = tmp_path / "once.txt"
    source.write_text("once\n")
    key = "nightly-" + secrets.token_hex(4)
    first = json.loads(ok("publish", str(source), "--idempotency-key", key, env=env))
    again = json.loads(ok("publish", str(source), "--idempotency-key", key, env=env))
    assert again["id"] == first["id"]
    assert [json.loads(x)["id"] for x in ok("ls", "--json", env=env).splitlines()] == [first["id"]]
    source.write_text("other bytes\n")
    line = failing(
        1, "idempotency_conflict", "publish", str(source), "--idempotency-key", key, env=env
    )
    assert "(request id " in line
    line = failing(
        2, "usage", "publish", str(source), str(source), "--idempotency-key", key, env=env
    )
    assert "--idempotency-key applies to a single FILE" in line
    # without a key each run publishes anew
    source.write_text("once\n")
    assert json.loads(ok("publish", str(source), env=env))["id"] != first["id"]


def test_ls_prints_nothing_before_it_knows_it_can_succeed(env: dict[str, str]) -> None:
    for args, status in (
        (["ls", "--token", "not-a-token"], 3),
        (["ls", "--url", f"http://127.0.0.1:{free_port()}", "--retries", "0"], 5),
    ):
        result = cli(*args, env=env)
        assert result.returncode == status and result.stdout == "", (args, result.stdout)
    assert ok("ls", env=env).split()[:2] == ["ID", "SIZE"]  # an empty listing: the header


def test_an_unreachable_gateway_is_said_at_once(env: dict[str, str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    said = f"cannot reach the gateway at {closed}: connection refused (is it running?)"
    # --retries 0: the error at once
    started = time.monotonic()
    line = failing(5, "unavailable", "quota", "--url", closed, "--retries", "0", env=env)
    assert said in line and time.monotonic() - started < 10
    # retrying: the first line comes after the first failure, long before the last
    with subprocess.Popen(
        [CLIENT, "quota", "--url", closed, "--retries", "8"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            started = time.monotonic()
            assert proc.stderr is not None
            first = proc.stderr.readline()
            took = time.monotonic() - started
        finally:
            proc.kill()
    assert first.startswith(f"mobius-artifacts: {said}; retrying in "), first
    assert "(retry 1 of 8; --retries 0 stops at once)" in first
    assert took < 10, took  # well before the ~1 min the 8 retries would take


def test_shell_completion(tmp_path: Path) -> None:
    script = ok("completion", "bash", env=environ())
    (tmp_path / "completion.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        line = " ".join(["mobius-artifacts", *words])
        probe = (
            f"source {tmp_path / 'completion.bash'}\n"
            f"COMP_WORDS=(mobius-artifacts {' '.join(words)})\n"
            f"COMP_CWORD={len(words)}\n"
            f"COMP_LINE='{line}'\nCOMP_POINT={len(line)}\n"
            "_shtab_mobius_artifacts\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        result = subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert "publish" in complete("pu")
    assert {"download", "completion"} <= set(complete(""))
    assert "--idempotency-key" in complete("publish", "--idem")
    assert "--no-progress" in complete("ls", "--no-p")
    assert "--retries" in complete("--ret")
    zsh = ok("completion", "zsh", env=environ())
    assert zsh.startswith("#compdef mobius-artifacts")
    usage_error("completion", "fish", env=environ())
