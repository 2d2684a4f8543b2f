"""``artifact-gateway dev`` as a user runs it: up, ready, usable, stopped, restarted."""

from __future__ import annotations

import json
import os
import signal
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


def _banner_token(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if "export TOKEN=" in line:
            return line.split("export TOKEN=", 1)[1].strip()
    raise AssertionError("no token in the banner")


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
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(data_dir, port)
    try:
        token = _banner_token(proc)
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

    # a second start on the same data dir finds the same data (and the same secrets)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _start(data_dir, port)
    try:
        token2 = _banner_token(proc)
        _wait_ready(base, proc)
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
    assert result.stderr == (
        f"artifact-gateway: cannot listen on 127.0.0.1:{dev.port}: address already in use\n"
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


def _run_session(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
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
    script = _readme_session().replace("http://127.0.0.1:8080", dev.base)
    published = []
    for _ in range(2):
        result = _run_session(script, checkout)
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
