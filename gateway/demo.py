"""The demo project of ``artifact-gateway dev --demo``: something to look at at once.

Seeded through the public HTTP API, as a scheduler and its workers would: a
session of two runs whose steps publish an image, markdown, code, CSV, JSON, an
HTML report and a log, and one artifact a person published. Seeding is
idempotent: a project that already holds the demo's last artifact is left as it is.
The PNG charts are drawn here (zlib and struct: no imaging library).
"""

from __future__ import annotations

import itertools
import json
import math
import secrets
import struct
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PROJECT = "demo"
SESSION = "sess_demo"
MARKER = "about-this-demo.md"  # published last: its presence means the demo is complete
Pixel = tuple[int, int, int]


def png(width: int, height: int, pixel: Callable[[int, int], Pixel]) -> bytes:
    """An RGB PNG of ``width`` x ``height`` whose colour at (x, y) is ``pixel(x, y)``."""
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        for x in range(width):
            rows.extend(pixel(x, y))
    return _png_bytes(width, height, bytes(rows))


def _png_bytes(width: int, height: int, raw: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


def chart(series: Sequence[Sequence[float]], width: int = 640, height: int = 360) -> bytes:
    """A line chart PNG: a grid and one coloured line per series (values 0..1)."""
    canvas = [[(255, 255, 255)] * width for _ in range(height)]
    left, right, top, bottom = 48, width - 16, 16, height - 32
    for gx in range(left, right + 1, (right - left) // 8):
        for y in range(top, bottom + 1):
            canvas[y][gx] = (232, 236, 241)
    for gy in range(top, bottom + 1, (bottom - top) // 5):
        for x in range(left, right + 1):
            canvas[gy][x] = (232, 236, 241)
    for x in range(left, right + 1):
        canvas[bottom][x] = (90, 100, 110)
    for y in range(top, bottom + 1):
        canvas[y][left] = (90, 100, 110)
    colours = [(36, 87, 197), (214, 96, 48), (26, 127, 55)]
    for index, values in enumerate(series):
        colour = colours[index % len(colours)]
        points = [
            (
                left + round(i * (right - left) / (len(values) - 1)),
                bottom - round(v * (bottom - top)),
            )
            for i, v in enumerate(values)
        ]
        for (x0, y0), (x1, y1) in itertools.pairwise(points):
            steps = max(abs(x1 - x0), abs(y1 - y0), 1)
            for s in range(steps + 1):
                x = x0 + round((x1 - x0) * s / steps)
                y = y0 + round((y1 - y0) * s / steps)
                for dx in (-1, 0, 1):
                    for dy in (-1, 0, 1):
                        if top <= y + dy <= bottom and left <= x + dx <= right:
                            canvas[y + dy][x + dx] = colour
    raw = b"".join(b"\x00" + bytes(c for p in row for c in p) for row in canvas)
    return _png_bytes(width, height, raw)


def _curve(start: float, end: float, rate: float, noise: float, n: int = 60) -> list[float]:
    return [
        end + (start - end) * math.exp(-rate * i) + noise * math.sin(i * 1.7) * math.exp(-i / 40)
        for i in range(n)
    ]


@dataclass
class File:
    name: str
    mime: str
    data: bytes
    description: str | None = None
    metadata: dict[str, Any] | None = None
    derived_from: list[str] = field(default_factory=list)  # names published before


def _report_md(run: str, loss: float, accuracy: float) -> bytes:
    return f"""# Evaluation report — `{run}`

The model was trained for **60 epochs**; the loss curve is `loss.png` in the
*evaluate* step.

| metric | value |
| --- | --- |
| final loss | {loss:.3f} |
| accuracy | {accuracy:.1%} |

## How it was trained

1. `prepare` split the data (`data.csv`) and wrote `config.json`;
2. `train` ran `train.py` and logged to `train.log`;
3. `evaluate` drew the curves and wrote `metrics.json`.

```python
scheduler = CosineAnnealing(optimizer, t_max=60)
for epoch in range(60):
    loss = train_one_epoch(model, loader)
```

> Numbers are made up: this is the gateway's demo project.
""".encode()


def _run_files(run: str, seed: int) -> dict[str, list[File]]:
    loss = _curve(0.95, 0.12 + 0.05 * seed, 0.08 + 0.02 * seed, 0.03)
    val = _curve(0.97, 0.18 + 0.05 * seed, 0.07 + 0.02 * seed, 0.05)
    accuracy = 0.91 - 0.04 * seed
    csv = "epoch,loss,val_loss\n" + "".join(
        f"{i},{a:.4f},{b:.4f}\n" for i, (a, b) in enumerate(zip(loss, val, strict=True))
    )
    log = (
        "".join(
            f"2026-01-0{1 + seed}T10:{i // 60:02d}:{i % 60:02d}Z INFO epoch={i} loss={a:.4f}\n"
            for i, a in enumerate(loss)
        )
        + f"2026-01-0{1 + seed}T11:00:00Z INFO done: checkpoint saved to model.ckpt\n"
    )
    config = {"learning_rate": 0.001 * (1 + seed), "epochs": 60, "batch_size": 64, "seed": seed}
    metrics = {"loss": round(loss[-1], 4), "val_loss": round(val[-1], 4), "accuracy": accuracy}
    html = (
        "<!DOCTYPE html><html><head><title>Run summary</title></head><body>"
        f"<h1>Run {run}</h1><p>Accuracy <strong>{accuracy:.1%}</strong> after 60 epochs.</p>"
        "<table border=1><tr><th>metric</th><th>value</th></tr>"
        f"<tr><td>loss</td><td>{loss[-1]:.3f}</td></tr>"
        f"<tr><td>val_loss</td><td>{val[-1]:.3f}</td></tr></table></body></html>"
    )
    code = '''"""Train the demo model."""

import json
from pathlib import Path


def train(config_path: Path, epochs: int = 60) -> float:
    config = json.loads(config_path.read_text())
    loss = 1.0
    for epoch in range(epochs):
        loss *= 1 - config["learning_rate"] * 10
        print(f"epoch={epoch} loss={loss:.4f}")
    return loss
'''
    return {
        "prepare": [
            File("data.csv", "text/csv", csv.encode(), description="Loss per epoch."),
            File("config.json", "application/json", json.dumps(config, indent=2).encode()),
        ],
        "train": [
            File("train.py", "text/x-python", code.encode()),
            File("train.log", "text/plain", log.encode()),
        ],
        "evaluate": [
            File(
                "loss.png",
                "image/png",
                chart([loss, val]),
                description="Training (blue) and validation (orange) loss.",
                metadata={"epochs": 60, "series": ["loss", "val_loss"]},
            ),
            File("metrics.json", "application/json", json.dumps(metrics).encode()),
        ],
        "report": [
            File(
                "report.md",
                "text/markdown",
                _report_md(run, loss[-1], accuracy),
                metadata={"run": run, "accuracy": accuracy},
                derived_from=["loss.png", "metrics.json"],
            ),
            File("summary.html", "text/html", html.encode()),
        ],
    }


class DemoError(RuntimeError):
    """The gateway refused a step of the demo."""


class _Http:
    def __init__(self, base: str, token: str) -> None:
        if not base.startswith(("http://", "https://")):
            raise DemoError(f"not an http(s) URL: {base!r}")
        self.base = base
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: dict[str, str] | None = None,
    ) -> Any:
        sent = {**(auth or {"Authorization": f"Bearer {self.token}"}), **(headers or {})}
        url = self.base + path
        request = urllib.request.Request(url, data=body, method=method, headers=sent)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
                text = resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                raise DemoError(f"{method} {path}: {exc.code} {exc.read()[:300]!r}") from None
        return json.loads(text) if text else None

    def ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.base + "/readyz", timeout=5) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise DemoError("the gateway did not become ready")
            time.sleep(0.2)


def _multipart(file: File, ids: dict[str, str]) -> tuple[bytes, str]:
    boundary = "demo" + secrets.token_hex(12)
    parts: list[bytes] = []

    def part(headers: str, data: bytes) -> None:
        parts.append(f"--{boundary}\r\n{headers}\r\n\r\n".encode() + data + b"\r\n")

    if file.description:
        part('Content-Disposition: form-data; name="description"', file.description.encode())
    if file.metadata is not None:
        part(
            'Content-Disposition: form-data; name="metadata"\r\nContent-Type: application/json',
            json.dumps(file.metadata).encode(),
        )
    if file.derived_from:
        part(
            'Content-Disposition: form-data; name="derived_from"\r\nContent-Type: application/json',
            json.dumps([ids[name] for name in file.derived_from]).encode(),
        )
    part(
        f'Content-Disposition: form-data; name="file"; filename="{file.name}"\r\n'
        f"Content-Type: {file.mime}",
        file.data,
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _publish(http: _Http, file: File, ids: dict[str, str], auth: dict[str, str] | None) -> str:
    body, content_type = _multipart(file, ids)
    ref = http.call(
        "POST",
        f"/v1/projects/{PROJECT}/artifacts",
        body,
        {"Content-Type": content_type},
        auth=auth,
    )
    ids[file.name] = ref["id"]
    return str(ref["id"])


def seed(base: str, token: str, *, ready_timeout: float = 60.0) -> int:
    """Seed the demo project through the gateway at ``base`` with an admin ``token``
    (``claims:write`` and ``artifacts:write``); the number of artifacts published,
    0 when the project already holds the demo."""
    http = _Http(base, token)
    http.ready(ready_timeout)
    done = http.call("GET", f"/v1/projects/{PROJECT}/artifacts?name_prefix={MARKER}")
    if done["items"]:
        return 0
    published = 0
    for index, run in enumerate(("run_demo_1", "run_demo_2")):
        ids: dict[str, str] = {}
        for step, files in _run_files(run, index).items():
            if index == 1 and step in ("prepare", "train"):
                continue  # the second run re-evaluates the first one's model
            claim = http.call(
                "POST",
                f"/v1/projects/{PROJECT}/claims",
                json.dumps(
                    {
                        "run_id": run,
                        "step_id": step,
                        "job_id": f"job_{step}_{secrets.token_hex(4)}",
                        "attempt": 1,
                        "worker_session_id": f"ws_demo_{index + 1}",
                        "session_id": SESSION,
                        "ttl_seconds": 600,
                    }
                ).encode(),
                {"Content-Type": "application/json"},
            )
            lease = {"X-Mobius-Lease-Token": claim["lease_token"]}
            for file in files:
                _publish(http, file, ids, lease)
                published += 1
            http.call("DELETE", f"/v1/projects/{PROJECT}/claims/{claim['lease_id']}")
    about = File(
        MARKER,
        "text/markdown",
        (
            "# About this demo\n\nSeeded by `artifact-gateway dev --demo`: the session "
            f"`{SESSION}` ran two runs. This note was published by a person (a principal "
            "artifact): only its owner and admins see it.\n"
        ).encode(),
        description="A principal artifact: no lineage, owned by the person who published it.",
    )
    _publish(http, about, {}, None)
    return published + 1
