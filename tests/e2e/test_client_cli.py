"""The ``mobius-artifacts`` command line as subprocesses against a served gateway; the
same subcommands of ``artifact-gateway``; ``artifact-gateway token``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
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
    line = failing(5, "unavailable", "quota", "--url", closed, "--retries", "1", env=env)
    assert closed in line and time.monotonic() - started < 15

    # 1: anything else
    failing(1, "not_found", "download", "art_" + "0" * 26, "-o", str(tmp_path), env=env)
    failing(1, "file_not_found", "publish", str(tmp_path / "missing.txt"), env=env)


def test_progress_bar_only_on_a_terminal(env: dict[str, str], tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with open(follower, "wb", closefd=True) as terminal:
        result = subprocess.run(
            [CLIENT, "publish", str(big)],
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
    assert result.returncode == 0
    assert json.loads(result.stdout)["size"] == 3 * 1024 * 1024
    assert b"big.bin:" in drawn and b"%|" in drawn  # the bar, on stderr only


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
