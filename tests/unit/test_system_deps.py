"""scripts/system-deps.sh: promtool comes out of Debian's package, no Prometheus server goes in.

The script runs against stand-ins for apt-get, dpkg-deb and id (recording how
they are called) on a PATH without promtool, so nothing is downloaded or
installed here; the real tools answer the same commands on a Debian machine.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_deploy_assets import find_promtool

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-deps.sh"
REAL_TOOLS = ("mktemp", "rm", "mkdir", "install", "chmod", "chown", "head", "cat", "touch")

FAKE_APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$CALLS"
if [ "$1" = download ]; then touch prometheus_2.42.0+ds-5_amd64.deb; fi
"""
FAKE_DPKG_DEB = """#!/bin/sh
echo "dpkg-deb $*" >> "$CALLS"
[ "$1" = -x ] || exit 2
mkdir -p "$3/usr/bin" "$3/lib/systemd/system"
printf '#!/bin/sh\\necho "promtool, version 2.42.0+ds (extracted)"\\n' > "$3/usr/bin/promtool"
chmod 0755 "$3/usr/bin/promtool"
: > "$3/usr/bin/prometheus"
: > "$3/lib/systemd/system/prometheus.service"
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


def _sandbox(tmp_path: Path, *, uid: int, chromium: bool) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in REAL_TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    _executable(bin_dir / "apt-get", FAKE_APT_GET)
    _executable(bin_dir / "dpkg-deb", FAKE_DPKG_DEB)
    # `id -u` answers the uid asked for; `id _apt` (the sandbox user) does not exist
    _executable(bin_dir / "id", f'#!/bin/sh\n[ "$1" = -u ] && echo {uid} && exit 0\nexit 1\n')
    if chromium:
        _executable(bin_dir / "chromium", "#!/bin/sh\n")
    calls = tmp_path / "calls.log"
    calls.touch()
    env = {"PATH": str(bin_dir), "VENV": str(tmp_path / "venv"), "CALLS": str(calls)}
    return env, calls


def _run(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [bash, str(SCRIPT)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("uid", [0, 1000])
def test_promtool_is_extracted_into_the_venv_and_nothing_installed(
    tmp_path: Path, uid: int
) -> None:
    env, calls = _sandbox(tmp_path, uid=uid, chromium=True)
    result = _run(env, tmp_path)
    assert result.returncode == 0, result.stderr
    promtool = tmp_path / "venv" / "bin" / "promtool"
    assert promtool.stat().st_mode & stat.S_IXUSR
    version = subprocess.run(
        [str(promtool), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("promtool, version")
    # only promtool lands in the venv: no server binary, no systemd unit
    assert sorted(p.name for p in (tmp_path / "venv" / "bin").iterdir()) == ["promtool"]
    lines = calls.read_text().splitlines()
    expected = ["apt-get download -qq prometheus"]
    if uid == 0:  # a fresh machine needs the package lists first
        expected = ["apt-get update -qq", *expected]
    assert [line for line in lines if line.startswith("apt-get")] == expected
    assert any(line.startswith("dpkg-deb -x ") for line in lines)
    # the download folder is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", "calls.log", "venv"]


def test_nothing_happens_when_the_tools_are_there(tmp_path: Path) -> None:
    env, calls = _sandbox(tmp_path, uid=0, chromium=True)
    _executable(Path(env["PATH"]) / "promtool", "#!/bin/sh\n")
    result = _run(env, tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    assert calls.read_text() == ""


def test_every_apt_install_is_chromium_without_recommends_and_no_service_start() -> None:
    text = SCRIPT.read_text().replace("\\\n", " ")
    installs = [line for line in text.splitlines() if re.search(r"apt-get\s.*\binstall\b", line)]
    assert installs, "the script installs Chromium with apt-get"
    for line in installs:
        assert "--no-install-recommends" in line, line
        assert "prometheus" not in line, line
    # a policy-rc.d that refuses every service start is in place before the install
    assert text.index("policy-rc.d") < text.index(installs[0])
    assert "exit 101" in text


def test_the_tests_prefer_the_venv_promtool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv_bin = tmp_path / "venv" / "bin"
    on_path = tmp_path / "path"
    venv_bin.mkdir(parents=True)
    on_path.mkdir()
    _executable(on_path / "promtool", "#!/bin/sh\n")
    monkeypatch.setattr("sys.executable", str(venv_bin / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    assert find_promtool() == str(on_path / "promtool")
    _executable(venv_bin / "promtool", "#!/bin/sh\n")
    assert find_promtool() == str(venv_bin / "promtool")
    os.chmod(venv_bin / "promtool", 0o644)  # not executable: not a candidate
    assert find_promtool() == str(on_path / "promtool")
