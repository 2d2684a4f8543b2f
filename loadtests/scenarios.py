"""The scenarios: each measures the gateway and its reference side by side, then checks correctness.

Repetitions alternate the order of the two sides (gateway first, then reference
first) so drift on the shared machine lands on both. Every load loop is bounded
by a deadline and a maximum operation count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import itertools
import os
import random
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from loadtests import clients
from loadtests.clients import BenchError, GatewayClient, Published
from loadtests.data import GiB, MiB, Pattern
from loadtests.stack import (
    BUCKET,
    RssSampler,
    Stack,
    add_cpu,
    cpu_delta,
    tree_memory,
    tree_minor_faults,
    tree_rss,
)
from loadtests.stats import latency_summary, ratio, summary

MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes per second)


@dataclass(frozen=True)
class Settings:
    quick: bool
    repeat: int
    large_sizes: tuple[int, ...]
    small_size: int = 1024
    small_concurrency: int = 32
    small_seconds: float = 20.0
    download_size: int = GiB
    download_small_seconds: float = 10.0
    memory_large_size: int = 2 * GiB
    memory_concurrent: tuple[int, int] = (64, 64 * MiB)
    mlflow_large_size: int = GiB
    mlflow_small_seconds: float = 20.0
    max_ops: int = 200_000
    sample_downloads: int = 16
    warm_seconds: float = 1.0  # untimed load before each closed loop's repetitions
    settle_seconds: float = 1.0  # idle time before reading a server's idle memory
    vacuum: bool = True  # compact SeaweedFS volumes after deleting a scenario's data

    @classmethod
    def full(cls, repeat: int = 3) -> Settings:
        return cls(quick=False, repeat=repeat, large_sizes=(GiB, 2 * GiB))

    @classmethod
    def smoke(cls, repeat: int = 1) -> Settings:
        return cls(
            quick=True,
            repeat=repeat,
            large_sizes=(32 * MiB,),
            small_seconds=2.0,
            download_size=32 * MiB,
            download_small_seconds=1.5,
            memory_large_size=64 * MiB,
            memory_concurrent=(8, 16 * MiB),
            mlflow_large_size=32 * MiB,
            mlflow_small_seconds=2.0,
            sample_downloads=8,
            warm_seconds=0.5,
            settle_seconds=0.3,
            vacuum=False,
        )


@dataclass
class Scenario:
    """What one scenario measured."""

    name: str
    status: str = "ok"  # ok | error | skipped
    reason: str | None = None
    figures: list[dict[str, Any]] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    cpu_seconds: dict[str, dict[str, float]] = field(default_factory=dict)
    correctness: list[dict[str, Any]] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    def add_figure(
        self,
        label: str,
        unit: str,
        gateway: list[float],
        reference: list[float] | None = None,
        *,
        reference_kind: str | None = None,
        target: tuple[str, float] | None = None,
        worst: bool = False,
        note: str | None = None,
    ) -> dict[str, Any]:
        """Add one row of the table; see :func:`evaluate` for the ratio and the target."""
        row = {
            "label": label,
            "unit": unit,
            "gateway": summary(gateway),
            "reference": summary(reference) if reference is not None else None,
            "reference_kind": reference_kind,
            "target": {"kind": target[0], "bound": target[1]} if target else None,
            "worst": worst,
            "note": note,
        }
        evaluate(row)
        self.figures.append(row)
        return row

    def check_no_errors(self, runs: list[dict[str, Any]], what: str) -> None:
        """A correctness row: every operation of the gateway's ``runs`` succeeded."""
        errors = sum(r["errors"] for r in runs)
        self.correctness.append(
            {
                "when": "during load",
                "passed": errors == 0,
                "problems": [f"{errors} {what} failed"] if errors else [],
            }
        )

    def cpu_cost(self, phase: str, *, per_gib: bool, process: str = "gateway") -> list[float]:
        """CPU seconds of ``process`` per GiB moved, or CPU milliseconds per operation."""
        out = []
        for r in self.raw:
            if r["phase"] != phase:
                continue
            amount = r.get("size", 0) / GiB if per_gib else r.get("ok", 0) / 1000
            if amount:
                out.append(r["cpu"].get(process, 0.0) / amount)
        return out

    @property
    def correct(self) -> bool:
        return all(check["passed"] for check in self.correctness)


def evaluate(row: dict[str, Any]) -> dict[str, Any]:
    """Set a table row's ratio, its spread and whether it meets its target.

    Repetition *i* of the gateway and of its reference ran back to back, so the
    ratio is the median of the per-repetition ratios (load from outside the
    benchmark then spoils one pair rather than one side); with unequal counts
    it falls back to the ratio of the medians, also kept as
    ``ratio_of_medians``. A target is ``ratio>=`` / ``ratio<=`` x, or
    ``value<`` / ``value<=`` x on the gateway's worst repetition when
    ``worst`` is set, else on its median.
    """
    gw, ref = row["gateway"], row["reference"]
    r = spread = None
    if ref is not None:
        row["ratio_of_medians"] = ratio(gw["median"], ref["median"])
        pairs = [g / x for g, x in zip(gw["raw"], ref["raw"], strict=False) if g is not None and x]
        if pairs and len(gw["raw"]) == len(ref["raw"]) == len(pairs):
            r = statistics.median(pairs)
            spread = [min(pairs), max(pairs)]
        else:
            r = row["ratio_of_medians"]
    row["ratio"], row["ratio_spread"] = r, spread
    passed: bool | None = None
    if row["target"]:
        kind, bound = row["target"]["kind"], row["target"]["bound"]
        value = gw["max"] if row["worst"] else gw["median"]
        if kind == "ratio>=":
            passed = r is not None and r >= bound
        elif kind == "ratio<=":
            passed = r is not None and r <= bound
        elif kind == "value<":
            passed = value is not None and value < bound
        elif kind == "value<=":
            passed = value is not None and value <= bound
    row["passed"] = passed
    return row


class Bench:
    """Shared state of one run: the stack, clients, settings and the time budget."""

    def __init__(self, stack: Stack, settings: Settings, deadline: float):
        self.stack = stack
        self.settings = settings
        self.deadline = deadline
        self.session: aiohttp.ClientSession | None = None
        self.s3: Any = None
        self.db: asyncpg.Pool | None = None
        self._exit = contextlib.AsyncExitStack()
        self.patterns = {name: Pattern(seed) for seed, name in enumerate(("large", "mem", "peer"))}

    async def __aenter__(self) -> Bench:
        self.session = await self._exit.enter_async_context(clients.http_session())
        self.s3 = await self._exit.enter_async_context(clients.s3_client(self.stack))
        self.db = await asyncpg.create_pool(self.stack.database_url, min_size=1, max_size=2)
        self._exit.push_async_callback(self.db.close)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._exit.aclose()

    @property
    def gw(self) -> GatewayClient:
        assert self.session is not None and self.stack.gateway is not None
        return GatewayClient(self.stack, self.session, self.stack.gateway.base_url)

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_time(self, scenario: Scenario, what: str) -> bool:
        if self.time_left() > 0:
            return False
        scenario.info.setdefault("truncated", []).append(what)
        return True

    # -- measuring ----------------------------------------------------------------------------

    async def measured(
        self, scenario: Scenario, phase: str, work: Awaitable[Any], **meta: Any
    ) -> tuple[Any, float, dict[str, float]]:
        """Run ``work``; record wall time and the CPU every process spent on it."""
        gateway = self.stack.gateway.pid if self.stack.gateway is not None else None
        faults = tree_minor_faults(gateway) if gateway else 0
        before = self.stack.cpu_snapshot()
        started = time.perf_counter()
        result = await work
        seconds = time.perf_counter() - started
        cpu = cpu_delta(before, self.stack.cpu_snapshot())
        add_cpu(scenario.cpu_seconds.setdefault(phase, {}), {"wall": round(seconds, 3), **cpu})
        record = {"phase": phase, "seconds": round(seconds, 4), "cpu": cpu, **meta}
        if gateway and cpu.get("gateway", 0) > 0:
            record["gateway_minor_faults"] = tree_minor_faults(gateway) - faults
        scenario.raw.append(record)
        return result, seconds, cpu

    async def paired_closed_loops(
        self,
        scenario: Scenario,
        what: str,
        *,
        reference: str,
        concurrency: int,
        seconds: float,
        gateway_op: Callable[[int, int], Awaitable[bool]],
        reference_op: Callable[[int], Callable[[int, int], Awaitable[bool]]],
        phase_suffix: str = "",
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Closed loops of the gateway and its reference, ``repeat`` times each,
        alternating which side goes first so drift lands on both.

        First an untimed warm-up of both sides (connections, caches), with
        ``reference_op(WARM_UP)``; then ``reference_op(rep)`` for each repetition.
        """
        await self.closed_loop(concurrency, self.settings.warm_seconds, gateway_op)
        await self.closed_loop(concurrency, self.settings.warm_seconds, reference_op(WARM_UP))
        gw_runs: list[dict[str, Any]] = []
        ref_runs: list[dict[str, Any]] = []
        for rep in range(self.settings.repeat):
            if self.out_of_time(scenario, f"{what} rep {rep}"):
                break
            sides = ("gateway", reference) if gateway_first(rep) else (reference, "gateway")
            for side in sides:
                op = gateway_op if side == "gateway" else reference_op(rep)
                run, _, _ = await self.measured(
                    scenario,
                    side + phase_suffix,
                    self.closed_loop(concurrency, seconds, op),
                    rep=rep,
                )
                scenario.raw[-1].update({k: round(v, 3) for k, v in run.items()})
                (gw_runs if side == "gateway" else ref_runs).append(run)
        return gw_runs, ref_runs

    async def closed_loop(
        self,
        concurrency: int,
        seconds: float,
        op: Callable[[int, int], Awaitable[bool]],
    ) -> dict[str, Any]:
        """``concurrency`` workers call ``op(worker, n)`` back to back until ``seconds`` pass.

        Bounded by ``max_ops`` and by a hard timeout of ``seconds + 60``.
        """
        counter = itertools.count()
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + seconds
        max_ops = self.settings.max_ops

        async def worker(w: int) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                n = next(counter)
                if n >= max_ops:
                    return
                t0 = time.perf_counter()
                try:
                    ok = await op(w, n)
                except (aiohttp.ClientError, OSError, BenchError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors += 1

        started = time.perf_counter()
        try:
            async with asyncio.timeout(seconds + 60):
                await asyncio.gather(*(worker(w) for w in range(concurrency)))
        except TimeoutError:
            errors += 1
        elapsed = time.perf_counter() - started
        return {
            "ok": len(latencies),
            "errors": errors,
            "elapsed": elapsed,
            "ops_per_s": len(latencies) / elapsed if elapsed > 0 else 0.0,
            **latency_summary(latencies),
        }

    # -- correctness --------------------------------------------------------------------------

    async def check_project(
        self, scenario: Scenario, project: str, published: list[Published], *, when: str
    ) -> None:
        """used_bytes = sum of live sizes; nothing lost or duplicated; samples hash right."""
        assert self.db is not None
        started = time.perf_counter()
        gw = self.gw
        quota = await gw.quota(project)
        rows = await self.db.fetch(
            "SELECT artifact_id, size, sha256, object_key FROM artifacts"
            " WHERE project_id = $1 AND state = 'available'",
            project,
        )
        pending = await self.db.fetchval(
            "SELECT count(*) FROM pending_uploads WHERE project_id = $1", project
        )
        live = {row["artifact_id"]: row for row in rows}
        total = sum(row["size"] for row in rows)
        sent = {p.artifact_id: p for p in published}
        objects = await self._object_keys(f"projects/{project}/")
        problems: list[str] = []
        if quota["used_bytes"] != total:
            problems.append(f"used_bytes {quota['used_bytes']} != sum of live sizes {total}")
        if quota.get("artifact_count", len(rows)) != len(rows):
            problems.append(f"artifact_count {quota['artifact_count']} != {len(rows)} live rows")
        if len(sent) != len(published):
            problems.append(f"{len(published) - len(sent)} artifact ids answered twice")
        if set(sent) != set(live):
            lost = len(set(sent) - set(live))
            extra = len(set(live) - set(sent))
            problems.append(f"{lost} published artifacts missing, {extra} unexpected rows")
        wrong = [p.artifact_id for p in published if p.sha256 != p.expected_sha256]
        wrong += [
            a for a, p in sent.items() if a in live and live[a]["sha256"] != p.expected_sha256
        ]
        if wrong:
            problems.append(f"{len(wrong)} recorded sha256 differ from the bytes sent")
        if pending:
            problems.append(f"{pending} pending_uploads rows left behind")
        keys = {row["object_key"] for row in rows}
        if objects != keys:
            problems.append(
                f"{len(keys - objects)} objects missing, {len(objects - keys)} orphan objects"
            )
        sampled = await self._sample_downloads(project, rows, sent)
        problems += sampled["problems"]
        scenario.correctness.append(
            {
                "when": when,
                "project": project,
                "passed": not problems,
                "problems": problems,
                "used_bytes": quota["used_bytes"],
                "sum_live_sizes": total,
                "live_artifacts": len(rows),
                "published": len(published),
                "objects": len(objects),
                "downloads_verified": sampled["verified"],
                "bytes_verified": sampled["bytes"],
                "seconds": round(time.perf_counter() - started, 2),
            }
        )

    async def _object_keys(self, prefix: str) -> set[str]:
        keys: set[str] = set()
        paginator = self.s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=BUCKET, Prefix=prefix):
            keys.update(item["Key"] for item in page.get("Contents", ()))
        return keys

    async def _sample_downloads(
        self, project: str, rows: list[Any], sent: dict[str, Published]
    ) -> dict[str, Any]:
        """Download a sample (at most one artifact over 256 MiB) and compare its sha256."""
        rng = random.Random(project)
        small = [r for r in rows if r["size"] <= 256 * MiB]
        large = [r for r in rows if r["size"] > 256 * MiB]
        sample = rng.sample(small, min(len(small), self.settings.sample_downloads))
        if large:
            sample.append(min(large, key=lambda r: r["size"]))
        problems: list[str] = []
        verified = 0
        received_total = 0
        for row in sample:
            received, digest = await self.gw.download(project, row["artifact_id"], digest=True)
            received_total += received
            expected = sent.get(row["artifact_id"])
            if received != row["size"] or digest != row["sha256"]:
                problems.append(f"{row['artifact_id']}: downloaded bytes differ from the record")
            elif expected is not None and digest != expected.expected_sha256:
                problems.append(f"{row['artifact_id']}: downloaded bytes differ from those sent")
            else:
                verified += 1
        return {"problems": problems, "verified": verified, "bytes": received_total}

    # -- housekeeping -------------------------------------------------------------------------

    async def cleanup(
        self, project: str, published: list[Published], direct_keys: list[str]
    ) -> dict[str, Any]:
        """Delete the large artifacts and direct objects (disk space), then compact volumes."""
        gw = self.gw
        started = time.perf_counter()
        deleted = 0
        for item in published:
            if item.size >= MiB and await gw.delete(project, item.artifact_id) == 204:
                deleted += 1
        for start in range(0, len(direct_keys), 1000):
            batch = direct_keys[start : start + 1000]
            await self.s3.delete_objects(
                Bucket=BUCKET, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
            )
        deleting = time.perf_counter() - started
        if self.settings.vacuum:
            await self.vacuum()
        return {
            "deleted_artifacts": deleted,
            "deleted_direct_objects": len(direct_keys),
            "delete_seconds": round(deleting, 2),
            "vacuum_seconds": round(time.perf_counter() - started - deleting, 2),
        }

    async def vacuum(self) -> None:
        """Ask SeaweedFS's master to compact volumes (reclaims deleted space); bounded."""
        assert self.session is not None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.session.get(
                f"{self.stack.master_url}/vol/vacuum",
                params={"garbageThreshold": "0.05"},
                timeout=aiohttp.ClientTimeout(total=120),
            ) as resp:
                await resp.read()

    async def warm_up(self) -> None:
        """SeaweedFS grows volumes on its first writes; pay that before measuring."""
        pattern = self.patterns["large"]
        keys = [f"bench/warm/{i}" for i in range(8)]
        await asyncio.gather(*(self.s3.put_object(Bucket=BUCKET, Key=k, Body=b"w") for k in keys))
        await clients.direct_multipart(self.s3, "bench/warm/multi", pattern, 64 * MiB)
        project = "bench-warm-" + secrets.token_hex(3)
        gw = self.gw
        lease = await gw.claim(project)
        await gw.publish_stream(project, lease, pattern, 32 * MiB, "warm.bin")
        for i in range(16):
            await gw.publish_bytes(project, lease, os.urandom(1024), f"warm-{i}.bin")
        await self.s3.delete_objects(
            Bucket=BUCKET,
            Delete={"Objects": [{"Key": k} for k in [*keys, "bench/warm/multi"]], "Quiet": True},
        )

    async def fresh_gateway_idle(self) -> dict[str, Any]:
        """Restart the gateway, serve a few requests, and read its idle memory."""
        await self.stack.restart_gateway()
        project = "bench-idle-" + secrets.token_hex(3)
        gw = self.gw
        lease = await gw.claim(project)
        ids = []
        for i in range(10):
            status, body = await gw.publish_bytes(project, lease, os.urandom(1024), f"i{i}.bin")
            if status == 201:
                ids.append(body["id"])
        for artifact_id in ids:
            await gw.get_small(project, artifact_id)
        await gw.quota(project)
        await asyncio.sleep(self.settings.settle_seconds)
        assert self.stack.gateway is not None
        return tree_memory(self.stack.gateway.pid)


WARM_UP = -1
"""The ``rep`` a reference op factory gets for the untimed warm-up."""


def small_publisher(
    bench: Bench, project: str, leases: list[str], published: list[Published]
) -> Callable[[int, int], Awaitable[bool]]:
    """A closed-loop op: worker ``w`` publishes fresh random bytes with ``leases[w]``."""
    size = bench.settings.small_size

    async def publish(w: int, n: int) -> bool:
        data = os.urandom(size)
        status, body = await bench.gw.publish_bytes(project, leases[w], data, f"s{n}.bin")
        if status != 201:
            return False
        expected = hashlib.sha256(data).hexdigest()
        published.append(Published(body["id"], body["size"], body["sha256"], expected))
        return True

    return publish


def new_project(name: str) -> str:
    return f"bench-{name}-{secrets.token_hex(3)}"


def gateway_first(rep: int) -> bool:
    return rep % 2 == 0


# ------------------------------------------------------------------------------------------------
# large-upload


async def large_upload(bench: Bench, scenario: Scenario) -> None:
    s = bench.settings
    gw = bench.gw
    project = new_project("large")
    lease = await gw.claim(project)
    pattern = bench.patterns["large"]
    published: list[Published] = []
    direct_keys: list[str] = []
    for size in s.large_sizes:
        pattern.sha256(size)  # computed before the clock starts
        gw_rates: list[float] = []
        direct_rates: list[float] = []
        for rep in range(s.repeat):
            if bench.out_of_time(scenario, f"large-upload {size} rep {rep}"):
                break
            for side in ("gateway", "direct") if gateway_first(rep) else ("direct", "gateway"):
                if side == "gateway":
                    assert bench.stack.gateway is not None
                    with RssSampler(bench.stack.gateway.pid) as rss:
                        item, seconds, _ = await bench.measured(
                            scenario,
                            "gateway",
                            gw.publish_stream(project, lease, pattern, size, f"large-{rep}.bin"),
                            size=size,
                            rep=rep,
                        )
                    scenario.raw[-1]["rss_growth_mib"] = round((rss.peak - rss.baseline) / MiB, 1)
                    published.append(item)
                    gw_rates.append(size / seconds / MB)
                else:
                    key = f"bench/direct/{project}/{size}-{rep}"
                    direct_keys.append(key)
                    _, seconds, _ = await bench.measured(
                        scenario,
                        "direct",
                        clients.direct_multipart(bench.s3, key, pattern, size),
                        size=size,
                        rep=rep,
                    )
                    direct_rates.append(size / seconds / MB)
                scenario.raw[-1]["mb_s"] = round(size / seconds / MB, 1)
        scenario.add_figure(
            f"upload {size // MiB} MiB",
            "MB/s",
            gw_rates,
            direct_rates,
            reference_kind="direct",
            target=("ratio>=", 0.9),
        )
    scenario.add_figure(
        "gateway CPU per GiB uploaded",
        "CPU-s",
        scenario.cpu_cost("gateway", per_gib=True),
    )
    await bench.check_project(scenario, project, published, when="after uploads")
    scenario.info["cleanup"] = await bench.cleanup(project, published, direct_keys)
    await bench.check_project(scenario, project, [], when="after deleting them")


# ------------------------------------------------------------------------------------------------
# small-upload


async def small_upload(bench: Bench, scenario: Scenario) -> None:
    s = bench.settings
    gw = bench.gw
    project = new_project("small")
    conc = s.small_concurrency
    leases = [await gw.claim(project) for _ in range(conc)]
    published: list[Published] = []
    direct_keys: list[str] = []

    publish = small_publisher(bench, project, leases, published)

    def put(prefix: str) -> Callable[[int, int], Awaitable[bool]]:
        async def op(w: int, n: int) -> bool:
            key = f"{prefix}/{n}"
            direct_keys.append(key)
            await bench.s3.put_object(Bucket=BUCKET, Key=key, Body=os.urandom(s.small_size))
            return True

        return op

    gw_runs, direct_runs = await bench.paired_closed_loops(
        scenario,
        "small-upload",
        reference="direct",
        concurrency=conc,
        seconds=s.small_seconds,
        gateway_op=publish,
        reference_op=lambda rep: put(f"bench/direct-small/{project}/{rep}"),
    )
    scenario.add_figure(
        f"publish {s.small_size // 1024} KiB x{conc}",
        "ops/s",
        [r["ops_per_s"] for r in gw_runs],
        [r["ops_per_s"] for r in direct_runs],
        reference_kind="direct",
        target=("ratio>=", 0.6),
    )
    for q in ("p50_ms", "p95_ms", "p99_ms"):
        scenario.add_figure(
            f"publish latency {q[:3]}",
            "ms",
            [r[q] for r in gw_runs],
            [r[q] for r in direct_runs],
            reference_kind="direct",
        )
    scenario.add_figure(
        "publish p99 / p50",
        "x",
        [r["p99_ms"] / r["p50_ms"] for r in gw_runs if r["p50_ms"]],
        target=("value<=", 5.0),
        worst=True,
    )
    scenario.add_figure(
        "gateway CPU per publish", "CPU-ms", scenario.cpu_cost("gateway", per_gib=False)
    )
    scenario.check_no_errors(gw_runs, "publishes")
    await bench.check_project(scenario, project, published, when="after uploads")
    scenario.info["cleanup"] = await bench.cleanup(project, [], direct_keys)


# ------------------------------------------------------------------------------------------------
# download


async def download(bench: Bench, scenario: Scenario) -> None:
    s = bench.settings
    gw = bench.gw
    project = new_project("download")
    lease = await gw.claim(project)
    pattern = bench.patterns["large"]
    size = s.download_size
    item = await gw.publish_stream(project, lease, pattern, size, "download.bin")
    published = [item]
    big_key = f"bench/direct/{project}/download"
    await clients.direct_multipart(bench.s3, big_key, pattern, size)
    direct_keys = [big_key]
    gw_rates: list[float] = []
    direct_rates: list[float] = []
    for rep in range(s.repeat):
        if bench.out_of_time(scenario, f"download rep {rep}"):
            break
        for side in ("gateway", "direct") if gateway_first(rep) else ("direct", "gateway"):
            if side == "gateway":
                work: Awaitable[Any] = gw.download(project, item.artifact_id)
            else:
                work = clients.direct_get(bench.s3, big_key)
            result, seconds, _ = await bench.measured(scenario, side, work, size=size, rep=rep)
            received = result[0] if side == "gateway" else result
            if received != size:
                raise BenchError(f"{side} download returned {received} of {size} bytes")
            (gw_rates if side == "gateway" else direct_rates).append(size / seconds / MB)
            scenario.raw[-1]["mb_s"] = round(size / seconds / MB, 1)
    scenario.add_figure(
        f"download {size // MiB} MiB",
        "MB/s",
        gw_rates,
        direct_rates,
        reference_kind="direct",
        target=("ratio>=", 0.9),
    )
    scenario.add_figure(
        "gateway CPU per GiB downloaded", "CPU-s", scenario.cpu_cost("gateway", per_gib=True)
    )

    # Small GETs: 64 small artifacts and 64 small objects, read at random.
    small_keys = [f"bench/direct-small/{project}/{i}" for i in range(64)]

    async def put_one(i: int) -> Published:
        data = os.urandom(s.small_size)
        status, body = await gw.publish_bytes(project, lease, data, f"get-{i}.bin")
        if status != 201:
            raise BenchError(f"publish for the GET test: HTTP {status}")
        await bench.s3.put_object(Bucket=BUCKET, Key=small_keys[i], Body=data)
        return Published(body["id"], body["size"], body["sha256"], hashlib.sha256(data).hexdigest())

    smalls = await asyncio.gather(*(put_one(i) for i in range(64)))
    small_ids = [p.artifact_id for p in smalls]
    published += smalls
    direct_keys += small_keys

    async def gw_get(w: int, n: int) -> bool:
        return await gw.get_small(project, small_ids[n % 64]) == 200

    async def direct_get(w: int, n: int) -> bool:
        return await clients.direct_get_small(bench.s3, small_keys[n % 64]) == 200

    conc = s.small_concurrency
    gw_runs, direct_runs = await bench.paired_closed_loops(
        scenario,
        "small GET",
        reference="direct",
        concurrency=conc,
        seconds=s.download_small_seconds,
        gateway_op=gw_get,
        reference_op=lambda rep: direct_get,
        phase_suffix="-small-get",
    )
    scenario.add_figure(
        f"GET {s.small_size // 1024} KiB content x{conc}",
        "req/s",
        [r["ops_per_s"] for r in gw_runs],
        [r["ops_per_s"] for r in direct_runs],
        reference_kind="direct",
    )
    scenario.add_figure(
        "gateway CPU per GET",
        "CPU-ms",
        scenario.cpu_cost("gateway-small-get", per_gib=False),
    )
    scenario.add_figure(
        "GET latency p99",
        "ms",
        [r["p99_ms"] for r in gw_runs],
        [r["p99_ms"] for r in direct_runs],
        reference_kind="direct",
    )
    scenario.check_no_errors(gw_runs, "GETs")
    await bench.check_project(scenario, project, published, when="after downloads")
    scenario.info["cleanup"] = await bench.cleanup(project, published, direct_keys)


# ------------------------------------------------------------------------------------------------
# memory


async def memory(bench: Bench, scenario: Scenario) -> None:
    s = bench.settings
    pattern = bench.patterns["mem"]
    project = new_project("memory")
    published: list[Published] = []

    # One large upload, on a freshly started gateway.
    idle = await bench.fresh_gateway_idle()
    scenario.info["idle_rss_mib_before_large"] = round(idle["rss"] / MiB, 1)
    gw = bench.gw
    lease = await gw.claim(project)
    size = s.memory_large_size
    pattern.sha256(size)
    growth: list[float] = []
    for rep in range(s.repeat):
        if bench.out_of_time(scenario, f"memory large rep {rep}"):
            break
        assert bench.stack.gateway is not None
        with RssSampler(bench.stack.gateway.pid) as rss:
            item, seconds, _ = await bench.measured(
                scenario,
                "gateway-large",
                gw.publish_stream(project, lease, pattern, size, f"mem-{rep}.bin"),
                size=size,
                rep=rep,
            )
        published.append(item)
        growth.append((rss.peak - idle["rss"]) / MiB)
        scenario.raw[-1].update(
            {
                "mb_s": round(size / seconds / MB, 1),
                "peak_rss_mib": round(rss.peak / MiB, 1),
                "growth_over_fresh_idle_mib": round(growth[-1], 1),
                "growth_over_start_mib": round((rss.peak - rss.baseline) / MiB, 1),
                "samples": rss.samples,
            }
        )
    scenario.add_figure(
        f"RSS growth, one {size // MiB} MiB upload",
        "MiB",
        growth,
        target=("value<", 64.0),
        worst=True,
    )

    # Many concurrent uploads, on a freshly started gateway again.
    count, each = s.memory_concurrent
    idle = await bench.fresh_gateway_idle()
    scenario.info["idle_rss_mib_before_concurrent"] = round(idle["rss"] / MiB, 1)
    gw = bench.gw
    pattern.sha256(each)
    growth = []
    for rep in range(s.repeat):
        if bench.out_of_time(scenario, f"memory concurrent rep {rep}"):
            break
        leases = [await gw.claim(project) for _ in range(count)]
        assert bench.stack.gateway is not None
        with RssSampler(bench.stack.gateway.pid) as rss:
            items, seconds, _ = await bench.measured(
                scenario,
                "gateway-concurrent",
                asyncio.gather(
                    *(
                        gw.publish_stream(project, leases[i], pattern, each, f"c{rep}-{i}.bin")
                        for i in range(count)
                    )
                ),
                size=count * each,
                rep=rep,
            )
        published.extend(items)
        growth.append((rss.peak - idle["rss"]) / MiB)
        scenario.raw[-1].update(
            {
                "mb_s": round(count * each / seconds / MB, 1),
                "peak_rss_mib": round(rss.peak / MiB, 1),
                "growth_over_fresh_idle_mib": round(growth[-1], 1),
                "growth_over_start_mib": round((rss.peak - rss.baseline) / MiB, 1),
                "samples": rss.samples,
            }
        )
    scenario.add_figure(
        f"RSS growth, {count} x {each // MiB} MiB concurrent",
        "MiB",
        growth,
        target=("value<", 256.0),
        worst=True,
    )
    await bench.check_project(scenario, project, published, when="after uploads")
    scenario.info["cleanup"] = await bench.cleanup(project, published, [])


# ------------------------------------------------------------------------------------------------
# mlflow (peer)


def mlflow_missing() -> str | None:
    if importlib.util.find_spec("mlflow") is None:
        return "the mlflow package is not installed (pip install -e '.[bench]')"
    if importlib.util.find_spec("boto3") is None:
        return "boto3 (MLflow's S3 client) is not installed"
    return None


async def mlflow_peer(bench: Bench, scenario: Scenario) -> None:
    s = bench.settings
    missing = mlflow_missing()
    if missing:
        scenario.status, scenario.reason = "skipped", missing
        return
    assert bench.session is not None
    gw_idle = await bench.fresh_gateway_idle()
    gw = bench.gw
    server = await bench.stack.start_mlflow()
    try:
        base = server.base_url
        run_prefix = "bench-" + secrets.token_hex(3)
        for i in range(10):
            status, _ = await clients.mlflow_put_bytes(
                bench.session, base, f"{run_prefix}/warm/{i}.bin", os.urandom(1024)
            )
            if status != 200:
                raise BenchError(f"mlflow warm-up upload: HTTP {status}")
        await asyncio.sleep(s.settle_seconds)
        ml_idle = tree_memory(server.pid)
        scenario.info["mlflow_processes"] = ml_idle["processes"]
        scenario.info["idle_memory"] = {"gateway": gw_idle, "mlflow": ml_idle}
        scenario.add_figure(
            "idle memory (PSS)",
            "MiB",
            [gw_idle["pss"] / MiB],
            [ml_idle["pss"] / MiB],
            reference_kind="mlflow",
            target=("ratio<=", 0.1),
            note=f"RSS {gw_idle['rss'] / MiB:.0f} vs {ml_idle['rss'] / MiB:.0f} MiB"
            f" ({ml_idle['processes']} MLflow processes)",
        )

        project = new_project("peer")
        lease = await gw.claim(project)
        pattern = bench.patterns["peer"]
        size = s.mlflow_large_size
        pattern.sha256(size)
        published: list[Published] = []
        gw_rates: list[float] = []
        ml_rates: list[float] = []
        for rep in range(s.repeat):
            if bench.out_of_time(scenario, f"mlflow large rep {rep}"):
                break
            for side in ("gateway", "mlflow") if gateway_first(rep) else ("mlflow", "gateway"):
                if side == "gateway":
                    work: Awaitable[Any] = gw.publish_stream(
                        project, lease, pattern, size, f"peer-{rep}.bin"
                    )
                else:
                    work = clients.mlflow_put_stream(
                        bench.session, base, f"{run_prefix}/large/{rep}.bin", pattern, size
                    )
                result, seconds, _ = await bench.measured(
                    scenario, side + "-large", work, size=size, rep=rep
                )
                if side == "gateway":
                    published.append(result)
                (gw_rates if side == "gateway" else ml_rates).append(size / seconds / MB)
                scenario.raw[-1]["mb_s"] = round(size / seconds / MB, 1)
        scenario.add_figure(
            f"upload {size // MiB} MiB",
            "MB/s",
            gw_rates,
            ml_rates,
            reference_kind="mlflow",
            target=("ratio>=", 1.2),
        )

        conc = s.small_concurrency
        leases = [await gw.claim(project) for _ in range(conc)]

        gw_small = small_publisher(bench, project, leases, published)

        async def ml_small(w: int, n: int) -> bool:
            assert bench.session is not None
            status, _ = await clients.mlflow_put_bytes(
                bench.session, base, f"{run_prefix}/small/{n}.bin", os.urandom(s.small_size)
            )
            return bool(status == 200)

        gw_runs, ml_runs = await bench.paired_closed_loops(
            scenario,
            "mlflow small",
            reference="mlflow",
            concurrency=conc,
            seconds=s.mlflow_small_seconds,
            gateway_op=gw_small,
            reference_op=lambda rep: ml_small,
            phase_suffix="-small",
        )
        scenario.add_figure(
            f"publish {s.small_size // 1024} KiB x{conc}",
            "ops/s",
            [r["ops_per_s"] for r in gw_runs],
            [r["ops_per_s"] for r in ml_runs],
            reference_kind="mlflow",
            target=("ratio>=", 2.5),
        )
        scenario.add_figure(
            "publish latency p99",
            "ms",
            [r["p99_ms"] for r in gw_runs],
            [r["p99_ms"] for r in ml_runs],
            reference_kind="mlflow",
        )
        scenario.info["memory_after_load"] = {
            "gateway_rss_mib": round(tree_rss(bench.stack.gateway.pid) / MiB, 1)
            if bench.stack.gateway
            else None,
            "mlflow_rss_mib": round(tree_rss(server.pid) / MiB, 1),
        }
        errors = {
            "gateway": sum(r["errors"] for r in gw_runs),
            "mlflow": sum(r["errors"] for r in ml_runs),
        }
        scenario.info["errors"] = errors
        scenario.check_no_errors(gw_runs, "gateway publishes")
        head = await bench.s3.head_object(Bucket=BUCKET, Key=f"mlflow/{run_prefix}/large/0.bin")
        scenario.correctness.append(
            {
                "when": "mlflow object",
                "passed": head["ContentLength"] == size,
                "problems": []
                if head["ContentLength"] == size
                else [f"MLflow stored {head['ContentLength']} of {size} bytes"],
            }
        )
        await bench.check_project(scenario, project, published, when="after uploads")
        ml_keys = sorted(await bench._object_keys(f"mlflow/{run_prefix}/"))
        scenario.info["cleanup"] = await bench.cleanup(project, published, ml_keys)
    finally:
        await bench.stack.stop_mlflow()


SCENARIOS: dict[str, Callable[[Bench, Scenario], Awaitable[None]]] = {
    "large-upload": large_upload,
    "small-upload": small_upload,
    "download": download,
    "memory": memory,
    "mlflow": mlflow_peer,
}
QUICK_SCENARIOS = ("large-upload", "small-upload", "download", "memory")
