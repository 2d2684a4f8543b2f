"""``serve --workers`` defaults to the CPUs this process may use: affinity, capped by a
cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``), at least 1."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import cli, server
from gateway.server import cgroup_cpu_quota, usable_cpus


@pytest.fixture
def affinity(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Pretend this process may run on ``n`` CPUs."""

    def set_cpus(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)

    return set_cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def proc_cgroup(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_a_two_cpu_quota_caps_a_64_core_affinity(tmp_path: Path, affinity: Any) -> None:
    affinity(64)
    write(tmp_path / "cgroup" / "cpu.max", "200000 100000")
    assert usable_cpus(tmp_path / "cgroup", proc_cgroup(tmp_path, "0::/")) == 2


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000", 64),  # no limit
        ("max", 64),
        ("150000 100000", 2),  # 1.5 CPUs: rounded up
        ("50000 100000", 1),  # half a CPU: still one worker
        ("800000 100000", 8),
        ("100000000 100000", 64),  # a quota above the affinity: the affinity
        ("garbage", 64),
        ("", 64),
    ],
)
def test_cgroup_v2_cpu_max(tmp_path: Path, affinity: Any, cpu_max: str, expected: int) -> None:
    affinity(64)
    write(tmp_path / "cgroup" / "cpu.max", cpu_max)
    assert usable_cpus(tmp_path / "cgroup", proc_cgroup(tmp_path, "0::/")) == expected


def test_cgroup_v2_the_tightest_of_the_cgroup_and_its_ancestors(
    tmp_path: Path, affinity: Any
) -> None:
    affinity(64)
    root = tmp_path / "cgroup"
    write(root / "kubepods.slice" / "cpu.max", "300000 100000")
    write(root / "kubepods.slice" / "pod1" / "cpu.max", "max 100000")
    write(root / "kubepods.slice" / "pod1" / "ctr" / "cpu.max", "max 100000")
    me = proc_cgroup(tmp_path, "0::/kubepods.slice/pod1/ctr")
    assert usable_cpus(root, me) == 3
    write(root / "kubepods.slice" / "pod1" / "ctr" / "cpu.max", "100000 100000")
    assert usable_cpus(root, me) == 1


def test_cgroup_v1_quota_and_period(tmp_path: Path, affinity: Any) -> None:
    affinity(64)
    root = tmp_path / "cgroup"
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "400000")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    me = proc_cgroup(tmp_path, "4:cpu,cpuacct:/", "1:name=systemd:/", "0::/")
    assert usable_cpus(root, me) == 4
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")  # no limit
    assert usable_cpus(root, me) == 64


def test_cgroup_v1_container_sees_its_own_cgroup_at_the_mount(
    tmp_path: Path, affinity: Any
) -> None:
    """Without a cgroup namespace the path names the host's folder, which the
    container does not have: the mount itself is the container's cgroup."""
    affinity(16)
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "250000")
    write(root / "cpu" / "cpu.cfs_period_us", "100000")
    me = proc_cgroup(tmp_path, "3:cpu:/docker/0123abcd", "2:cpuacct:/docker/0123abcd")
    assert cgroup_cpu_quota(root, me) == 3
    assert usable_cpus(root, me) == 3


def test_no_cgroup_files_leave_the_affinity(tmp_path: Path, affinity: Any) -> None:
    affinity(6)
    assert cgroup_cpu_quota(tmp_path / "absent", tmp_path / "absent-too") is None
    assert usable_cpus(tmp_path / "absent", tmp_path / "absent-too") == 6


def test_an_affinity_smaller_than_the_quota_wins(tmp_path: Path, affinity: Any) -> None:
    affinity(2)
    write(tmp_path / "cgroup" / "cpu.max", "800000 100000")
    assert usable_cpus(tmp_path / "cgroup", proc_cgroup(tmp_path, "0::/")) == 2


def test_without_an_affinity_mask_the_cpu_count_at_least_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 12)
    assert usable_cpus(tmp_path / "absent", tmp_path / "absent") == 12
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cpus(tmp_path / "absent", tmp_path / "absent") == 1


def test_this_machine() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))


def test_serve_defaults_to_the_usable_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    config = SimpleNamespace(require_backends=lambda: None, require_keys=lambda: None)
    monkeypatch.setattr(cli, "_load_config", lambda *required: config)
    monkeypatch.setattr(cli, "_listen", lambda config: None)
    monkeypatch.setattr(
        cli, "_run_server", lambda config, listeners, workers=1: started.append(workers)
    )
    monkeypatch.setattr(server, "usable_cpus", lambda: 3)
    cli.main(["serve"])
    cli.main(["serve", "--workers", "5"])
    assert started == [3, 5]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", "--workers", "0"])
    assert exit_info.value.code == 2
