"""Soak: a mixed workload at steady concurrency for a fixed time, with the gateway's
RSS, open file descriptors and connections sampled throughout.

    python -m loadtests.soak [--minutes 10] [--concurrency 16] [--out loadtests/results/soak.json]

Each worker loops: publish (1 KiB to 4 MiB, now and then 20 MiB), read the artifact
back and check its digest, list, mint a signed URL and fetch through it, and delete
about a third of what it published. Every loop is bounded by the deadline. At the
end: no errors, ``used_bytes`` equals the sum of live sizes, and the samples show
whether RSS, descriptors and connections stayed flat (first vs last fifth).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from loadtests.clients import GatewayClient, http_session
from loadtests.stack import Stack, tree_rss

SIZES = [1024, 16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024]


def sample_tree(pid: int) -> dict[str, int]:
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    fds = conns = 0
    for proc in procs:
        try:
            fds += proc.num_fds()
            conns += len(proc.net_connections(kind="tcp"))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {"rss": tree_rss(pid), "fds": fds, "connections": conns}


class Sampler(threading.Thread):
    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[dict[str, Any]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        while not self.stopped.wait(self.interval):
            self.samples.append(
                {"t": round(time.monotonic() - started, 1), **sample_tree(self.pid)}
            )


async def worker(
    client: GatewayClient,
    project: str,
    lease: str,
    deadline: float,
    counts: dict[str, int],
    errors: list[str],
) -> None:
    rng = random.Random(os.urandom(8))
    mine: list[str] = []
    while time.monotonic() < deadline:
        size = 20 * 1024 * 1024 if rng.random() < 0.02 else rng.choice(SIZES)
        data = rng.randbytes(size)
        try:
            status, ref = await client.publish_bytes(project, lease, data, f"soak-{size}.bin")
            if status != 201:
                errors.append(f"publish {status}: {str(ref)[:200]}")
                continue
            counts["published"] += 1
            received, digest = await client.download(project, ref["id"], digest=True)
            if digest != hashlib.sha256(data).hexdigest() or received != size:
                errors.append(f"download of {ref['id']} does not match")
            counts["downloaded"] += 1
            async with client.session.get(
                f"{client.base}/v1/projects/{project}/artifacts?limit=20", headers=client.admin
            ) as resp:
                if resp.status != 200:
                    errors.append(f"list {resp.status}")
                await resp.read()
            async with client.session.post(
                f"{client.base}/v1/projects/{project}/artifacts/{ref['id']}/signed-url",
                headers=client.admin,
            ) as resp:
                url = (await resp.json())["url"]
            async with client.session.get(client.base + url) as resp:
                if resp.status != 200:
                    errors.append(f"signed url {resp.status}")
                await resp.read()
            mine.append(ref["id"])
            if rng.random() < 0.33:
                victim = mine.pop(rng.randrange(len(mine)))
                if await client.delete(project, victim) != 204:
                    errors.append(f"delete {victim}")
                counts["deleted"] += 1
        except Exception as exc:  # counted, never hidden
            errors.append(f"{type(exc).__name__}: {exc}"[:300])


def flat(samples: list[dict[str, Any]], key: str) -> dict[str, float]:
    fifth = max(1, len(samples) // 5)
    first = statistics.median(s[key] for s in samples[:fifth])
    last = statistics.median(s[key] for s in samples[-fifth:])
    return {
        "first": first,
        "last": last,
        "peak": max(s[key] for s in samples),
        "growth": last - first,
    }


async def soak(minutes: float, concurrency: int, out: Path) -> int:
    root = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    stack = Stack(root)
    try:
        await asyncio.to_thread(stack.start_backends)
        gateway = await stack.start_gateway()
        project = "soak-" + os.urandom(3).hex()
        counts = {"published": 0, "downloaded": 0, "deleted": 0}
        errors: list[str] = []
        sampler = Sampler(gateway.pid, interval=2.0)
        async with http_session(limit=concurrency * 2) as session:
            client = GatewayClient(stack, session, gateway.base_url)
            leases = [await client.claim(project) for _ in range(concurrency)]
            sampler.start()
            deadline = time.monotonic() + minutes * 60
            await asyncio.gather(
                *(worker(client, project, lease, deadline, counts, errors) for lease in leases)
            )
            sampler.stopped.set()
            sampler.join()
            quota = await client.quota(project)
        conn = await asyncpg.connect(stack.database_url)
        try:
            live = await conn.fetchval(
                "SELECT coalesce(sum(size), 0) FROM artifacts "
                "WHERE project_id = $1 AND state = 'available'",
                project,
            )
        finally:
            await conn.close()
        result = {
            "minutes": minutes,
            "concurrency": concurrency,
            "counts": counts,
            "errors": len(errors),
            "first_errors": errors[:10],
            "used_bytes": quota["used_bytes"],
            "live_bytes": int(live),
            "quota_exact": quota["used_bytes"] == int(live),
            "rss_bytes": flat(sampler.samples, "rss"),
            "open_fds": flat(sampler.samples, "fds"),
            "tcp_connections": flat(sampler.samples, "connections"),
            "samples": sampler.samples,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        mib = 1024 * 1024
        print(f"soak {minutes:g} min x {concurrency}: {counts}, errors {len(errors)}")
        rss = result["rss_bytes"]
        print(
            f"  RSS MiB first/last/peak: {rss['first'] / mib:.0f} / {rss['last'] / mib:.0f} "
            f"/ {rss['peak'] / mib:.0f}"
        )
        for key in ("open_fds", "tcp_connections"):
            figures = result[key]
            print(
                f"  {key} first/last/peak: {figures['first']:.0f} / {figures['last']:.0f} "
                f"/ {figures['peak']:.0f}"
            )
        print(f"  used_bytes {quota['used_bytes']} == live {live}: {result['quota_exact']}")
        print(f"  results: {out}")
        return 0 if not errors and result["quota_exact"] else 1
    finally:
        await asyncio.to_thread(stack.stop)
        shutil.rmtree(root, ignore_errors=True)  # the backends' data, tens of GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("loadtests/results/soak.json"))
    args = parser.parse_args()
    raise SystemExit(asyncio.run(soak(args.minutes, args.concurrency, args.out)))


if __name__ == "__main__":
    main()
