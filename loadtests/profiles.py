"""Where a profiled process spent its time, from py-spy's collapsed stacks.

``python -m loadtests.profiles FILE`` prints the share of samples in which
each library is on the stack (inclusive) and the functions that were running
(self time).
"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
GROUPS = (
    ("botocore/aiobotocore", ("botocore/", "aiobotocore/")),
    ("aiohttp (server + client)", ("aiohttp/", "multidict/", "yarl/")),
    ("asyncpg", ("asyncpg/",)),
    ("PyJWT / cryptography", ("jwt/", "cryptography/")),
    ("structlog / logging", ("structlog/", "logging/")),
    ("prometheus_client", ("prometheus_client/",)),
    ("gateway/", ("/gateway/",)),
    ("storage/", ("/storage/",)),
    ("leases/", ("/leases/",)),
    ("ulid / puremagic", ("ulid/", "puremagic/")),
    ("json", ("json/",)),
    ("hashlib", ("hashlib",)),
)
SOCKET_WRITE = "write (asyncio/selector_events.py"


def _parse(line: str) -> tuple[list[str], int] | None:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    if not stack or not count.isdigit():
        return None
    return stack.split(";"), int(count)


def _owner(frames: list[str]) -> str:
    """The library doing the work: the innermost frame that belongs to a group."""
    for frame in reversed(frames):
        for name, needles in GROUPS:
            if any(n in frame for n in needles):
                return name
    return "stdlib / event loop"


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    total = 0
    groups: collections.Counter[str] = collections.Counter()
    owners: collections.Counter[str] = collections.Counter()
    sends: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        frames, count = parsed
        total += count
        seen = set()
        for frame in frames:
            for name, needles in GROUPS:
                if name not in seen and any(n in frame for n in needles):
                    seen.add(name)
        for name in seen:
            groups[name] += count
        owner = _owner(frames)
        owners[owner] += count
        if SOCKET_WRITE in frames[-1]:
            sends[owner] += count
        leaf = frames[-1]
        match = _FRAME.match(leaf)
        if match:
            file = match.group("file").split("site-packages/")[-1]
            leaf = f"{match.group('func')} ({file})"
        leaves[leaf] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "inclusive_percent": {k: share(v) for k, v in groups.most_common()},
        "owner_percent": {k: share(v) for k, v in owners.most_common()},
        "socket_write_percent_by_owner": {k: share(v) for k, v in sends.most_common()},
        "self_percent": {k: share(v) for k, v in leaves.most_common(top)},
    }


def render(summary: dict[str, Any]) -> str:
    lines = [f"{summary['samples']} samples", "by library doing the work (innermost, %):"]
    lines += [f"  {v:5.1f}  {k}" for k, v in summary["owner_percent"].items()]
    lines.append("  of which in socket writes (send syscalls), by library:")
    lines += [f"  {v:5.1f}    {k}" for k, v in summary["socket_write_percent_by_owner"].items()]
    lines.append("on the stack (inclusive %):")
    lines += [f"  {v:5.1f}  {k}" for k, v in summary["inclusive_percent"].items()]
    lines.append("running (self %):")
    lines += [f"  {v:5.1f}  {k}" for k, v in summary["self_percent"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg)
        print(render(summarize(Path(arg))))
