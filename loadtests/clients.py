"""The three ways in: the gateway's HTTP API, S3 directly (aiobotocore), MLflow's artifact proxy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiobotocore.session import get_session

from loadtests.data import PATTERN, MultipartFrame, Pattern, stream
from loadtests.stack import ALL_SCOPES, BUCKET, REGION, Stack
from storage.s3 import S3Settings, client_config

# aiohttp notes that a large ``bytes`` body is sent in one write; for the direct
# baseline that is the point (no copy), so the notice is noise here.
warnings.filterwarnings("ignore", message="Sending a large body directly", category=ResourceWarning)

READ_CHUNK = 1024 * 1024


class BenchError(RuntimeError):
    """A request the benchmark relies on failed."""


@dataclass
class Published:
    artifact_id: str
    size: int
    sha256: str
    expected_sha256: str


def http_session(limit: int = 256) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, limit_per_host=limit),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        skip_auto_headers=("User-Agent",),
    )


class GatewayClient:
    """The gateway's HTTP API as a fleet worker and a read client use it."""

    def __init__(self, stack: Stack, session: aiohttp.ClientSession, base_url: str):
        self.session = session
        self.base = base_url
        self.admin = {"Authorization": "Bearer " + stack.token("user:bench-admin", ALL_SCOPES)}
        self.scheduler = {"Authorization": "Bearer " + stack.token("svc:bench", ["claims:write"])}

    async def claim(self, project: str) -> str:
        body = {
            "run_id": "run_" + secrets.token_hex(4),
            "step_id": "bench",
            "job_id": "job_" + secrets.token_hex(4),
            "attempt": 1,
            "worker_session_id": "ws_" + secrets.token_hex(4),
            "ttl_seconds": 6 * 3600,
        }
        async with self.session.post(
            f"{self.base}/v1/projects/{project}/claims", json=body, headers=self.scheduler
        ) as resp:
            if resp.status != 201:
                raise BenchError(f"claim: HTTP {resp.status}: {await resp.text()}")
            data = await resp.json()
        return str(data["lease_token"])

    async def publish_stream(
        self, project: str, lease: str, pattern: Pattern, size: int, name: str
    ) -> Published:
        """Publish ``size`` bytes of ``pattern``, streamed, with a Content-Length."""
        frame = MultipartFrame.for_file(name)
        headers = {
            "X-Mobius-Lease-Token": lease,
            "Content-Type": frame.content_type,
            "Content-Length": str(frame.length(size)),
        }
        async with self.session.post(
            f"{self.base}/v1/projects/{project}/artifacts",
            data=frame.stream(pattern.chunks(size)),
            headers=headers,
        ) as resp:
            if resp.status != 201:
                raise BenchError(f"publish {name}: HTTP {resp.status}: {await resp.text()}")
            data = await resp.json()
        return Published(data["id"], data["size"], data["sha256"], pattern.sha256(size))

    async def publish_bytes(self, project: str, lease: str, data: bytes, name: str) -> Any:
        """One small publish; returns (status, json or text)."""
        frame = MultipartFrame.for_file(name)
        headers = {"X-Mobius-Lease-Token": lease, "Content-Type": frame.content_type}
        async with self.session.post(
            f"{self.base}/v1/projects/{project}/artifacts", data=frame.wrap(data), headers=headers
        ) as resp:
            if resp.status == 201:
                return resp.status, await resp.json()
            return resp.status, await resp.text()

    def content_url(self, project: str, artifact_id: str) -> str:
        return f"{self.base}/v1/projects/{project}/artifacts/{artifact_id}/content"

    async def download(self, project: str, artifact_id: str, *, digest: bool = False) -> Any:
        """(bytes received, sha256 hex or None)."""
        hasher = hashlib.sha256() if digest else None
        received = 0
        async with self.session.get(
            self.content_url(project, artifact_id), headers=self.admin
        ) as resp:
            if resp.status != 200:
                raise BenchError(f"download {artifact_id}: HTTP {resp.status}")
            async for chunk in resp.content.iter_chunked(READ_CHUNK):
                received += len(chunk)
                if hasher is not None:
                    hasher.update(chunk)
        return received, hasher.hexdigest() if hasher is not None else None

    async def get_small(self, project: str, artifact_id: str) -> int:
        async with self.session.get(
            self.content_url(project, artifact_id), headers=self.admin
        ) as resp:
            await resp.read()
            return resp.status

    async def quota(self, project: str) -> dict[str, Any]:
        async with self.session.get(
            f"{self.base}/v1/projects/{project}/artifacts/quota", headers=self.admin
        ) as resp:
            if resp.status != 200:
                raise BenchError(f"quota: HTTP {resp.status}")
            data: dict[str, Any] = await resp.json()
            return data

    async def delete(self, project: str, artifact_id: str) -> int:
        async with self.session.delete(
            f"{self.base}/v1/projects/{project}/artifacts/{artifact_id}", headers=self.admin
        ) as resp:
            return resp.status


@contextlib.asynccontextmanager
async def s3_client(stack: Stack) -> AsyncIterator[Any]:
    """An aiobotocore client configured exactly like the gateway's (storage.s3.client_config)."""
    settings = S3Settings(
        endpoint_url=stack.s3_endpoint_url,
        bucket=BUCKET,
        region=REGION,
        access_key_id=stack.secrets.s3_access_key_id,
        secret_access_key=stack.secrets.s3_secret_access_key,
    )
    async with get_session().create_client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=REGION,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        config=client_config(settings),
    ) as client:
        yield client


async def direct_multipart(
    s3: Any, key: str, pattern: Pattern, size: int, *, concurrency: int = 4
) -> None:
    """A direct multipart upload: 8 MiB parts, ``concurrency`` in flight."""
    if size <= PATTERN:
        await s3.put_object(Bucket=BUCKET, Key=key, Body=pattern.part(1, size))
        return
    upload = await s3.create_multipart_upload(Bucket=BUCKET, Key=key)
    upload_id = upload["UploadId"]
    count = -(-size // PATTERN)
    numbers = iter(range(1, count + 1))
    etags: dict[int, str] = {}

    async def worker() -> None:
        for number in numbers:
            answer = await s3.upload_part(
                Bucket=BUCKET,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=pattern.part(number, size),
            )
            etags[number] = answer["ETag"]

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]},
        )
    except BaseException:
        with contextlib.suppress(Exception):
            await s3.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id)
        raise


async def direct_get(s3: Any, key: str) -> int:
    answer = await s3.get_object(Bucket=BUCKET, Key=key)
    received = 0
    async with answer["Body"] as body:
        async for chunk in body.iter_chunks(READ_CHUNK):
            received += len(chunk)
    return received


async def direct_get_small(s3: Any, key: str) -> int:
    answer = await s3.get_object(Bucket=BUCKET, Key=key)
    async with answer["Body"] as body:
        await body.read()
    return 200


async def mlflow_put_stream(
    session: aiohttp.ClientSession, base: str, path: str, pattern: Pattern, size: int
) -> None:
    async with session.put(
        f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}",
        data=stream(pattern.chunks(size)),
        headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
    ) as resp:
        if resp.status != 200:
            raise BenchError(f"mlflow upload {path}: HTTP {resp.status}: {await resp.text()}")
        await resp.read()


async def mlflow_put_bytes(
    session: aiohttp.ClientSession, base: str, path: str, data: bytes
) -> Any:
    async with session.put(
        f"{base}/api/2.0/mlflow-artifacts/artifacts/{path}",
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    ) as resp:
        return resp.status, await resp.read()


def now() -> float:
    return time.perf_counter()
