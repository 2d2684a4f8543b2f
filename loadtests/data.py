"""Request bodies without holding them in memory: reused random blocks, multipart framing.

An upload of ``size`` bytes is a random 8 MiB pattern repeated and cut at
``size``. The pattern is cut into 1 MiB ``bytes`` blocks once, so streaming a
body yields the same objects again and again (no allocation, no copy), and an
8 MiB S3 part of a direct upload is the pattern itself: the gateway and the
direct client send exactly the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

MiB = 1024 * 1024
GiB = 1024 * MiB
BLOCK = MiB
PATTERN = 8 * MiB  # equals the S3 part size of the direct baseline


@dataclass(eq=False)
class Pattern:
    """Deterministic pseudo-random content of any length, from one 8 MiB pattern."""

    seed: int
    data: bytes = field(init=False, repr=False)
    blocks: tuple[bytes, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.data = random.Random(self.seed).randbytes(PATTERN)
        self.blocks = tuple(self.data[i : i + BLOCK] for i in range(0, PATTERN, BLOCK))

    def chunks(self, size: int) -> Iterator[bytes]:
        """The first ``size`` bytes of the repeated pattern, in 1 MiB blocks."""
        left = size
        index = 0
        while left > 0:
            block = self.blocks[index % len(self.blocks)]
            if left < len(block):
                block = block[:left]
            yield block
            left -= len(block)
            index += 1

    def part(self, number: int, size: int) -> bytes:
        """Part ``number`` (1-based) of an upload of ``size`` bytes in 8 MiB parts."""
        start = (number - 1) * PATTERN
        length = min(PATTERN, size - start)
        return self.data if length == PATTERN else self.data[:length]

    @functools.cache  # noqa: B019 - a handful of patterns live for the whole run
    def sha256(self, size: int) -> str:
        digest = hashlib.sha256()
        for block in self.chunks(size):
            digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class MultipartFrame:
    """The bytes around one ``file`` part of a ``multipart/form-data`` publish."""

    head: bytes
    tail: bytes
    content_type: str

    @classmethod
    def for_file(cls, filename: str, mime: str = "application/octet-stream") -> MultipartFrame:
        boundary = "bench" + secrets.token_hex(16)
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        return cls(head, tail, f"multipart/form-data; boundary={boundary}")

    def length(self, size: int) -> int:
        return len(self.head) + size + len(self.tail)

    def wrap(self, data: bytes) -> bytes:
        return self.head + data + self.tail

    async def stream(self, chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
        yield self.head
        for chunk in chunks:
            yield chunk
        yield self.tail


async def stream(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` as an async iterable request body (aiohttp streams it)."""
    for chunk in chunks:
        yield chunk
