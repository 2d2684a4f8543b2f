"""The benchmark suite still works: ``python -m loadtests.run --quick`` end to end.

Benchmarks are not timed tests; this only proves that the load generator, the
stack it starts and its correctness checks run, with tiny sizes.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
QUICK_SCENARIOS = ("large-upload", "small-upload", "download", "memory")


def _run_quick(out: Path) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadtests.run", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the runner stops the servers it started
        try:
            output, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail("the quick benchmark did not finish within 180 s:\n" + output[-4000:])
    return proc.returncode, output


def test_quick_benchmark_runs_and_checks_pass(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    status, output = _run_quick(out)
    assert status == 0, output[-4000:]
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    assert doc["machine"]["nproc"] >= 1
    assert doc["summary"]["correctness_passed"] is True
    assert doc["summary"]["scenarios_failed"] == []
    for name in QUICK_SCENARIOS:
        scenario = doc["scenarios"][name]
        assert scenario["status"] == "ok", (name, scenario["reason"])
        assert scenario["correctness"], name
        assert all(check["passed"] for check in scenario["correctness"]), scenario["correctness"]
        assert scenario["figures"], name
        for figure in scenario["figures"]:
            median = figure["gateway"]["median"]
            assert isinstance(median, int | float) and math.isfinite(median), figure
            if figure["unit"] in ("MB/s", "ops/s", "req/s"):
                assert median > 0, figure
            if figure["reference"] is not None:
                assert figure["reference"]["median"] > 0, figure
                assert figure["ratio"] is not None and figure["ratio"] > 0, figure
        assert scenario["cpu_seconds"]["gateway" if name != "memory" else "gateway-large"]
