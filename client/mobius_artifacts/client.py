"""The asyncio client of the artifact gateway.

Configuration comes from the environment a process already has, and explicit
arguments override it (see :mod:`mobius_artifacts.config`); retries and errors
are described in :mod:`mobius_artifacts.transport`, publishing in
:mod:`mobius_artifacts.uploads`, downloading in :mod:`mobius_artifacts.downloads`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import aiohttp
from yarl import URL

from mobius_artifacts import downloads, uploads
from mobius_artifacts.config import resolve
from mobius_artifacts.events import EventStream
from mobius_artifacts.transport import RetryHook, Transport
from mobius_artifacts.values import (
    Artifact,
    ArtifactContent,
    ArtifactRef,
    Progress,
    Quota,
    SignedURL,
    Source,
    timestamp,
)


class AsyncArtifactClient:
    """Publish, list, fetch, download and follow artifacts of one project.

    Use it as ``async with AsyncArtifactClient() as client: ...`` (or call
    :meth:`close`). The HTTP session is created on first use, in the running
    event loop. Pass ``session`` to share an existing :class:`aiohttp.ClientSession`
    (it is then not closed here); ``env`` replaces ``os.environ`` as the source
    of configuration; ``ca_bundle`` (else ``MOBIUS_ARTIFACTS_CA_BUNDLE``) names the
    certificate authorities to trust instead of the system's. ``on_retry(error,
    failures, delay)`` is called before each retry of a transient failure (an
    :class:`Unavailable` describing it, the failures so far, the seconds until the
    next attempt), e.g. to say "retrying…" on a terminal.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        lease_token: str | None = None,
        project: str | None = None,
        retries: int = 5,
        stall_timeout: float = 60.0,
        connect_timeout: float = 30.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        ca_bundle: str | os.PathLike[str] | None = None,
        session: aiohttp.ClientSession | None = None,
        env: Mapping[str, str] | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        settings = resolve(
            url,
            token=token,
            lease_token=lease_token,
            project=project,
            ca_bundle=ca_bundle,
            env=os.environ if env is None else env,
        )
        self._transport = Transport(
            settings,
            retries=retries,
            stall_timeout=stall_timeout,
            connect_timeout=connect_timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            session=session,
            on_retry=on_retry,
        )
        self._streams: weakref.WeakSet[EventStream] = weakref.WeakSet()

    # -- configuration

    @property
    def project(self) -> str:
        return self._transport.project

    @property
    def base_url(self) -> URL:
        return self._transport.base_url

    @property
    def token(self) -> str | None:
        return self._transport.settings.token

    @property
    def lease_token(self) -> str | None:
        return self._transport.settings.lease_token

    @property
    def retries(self) -> int:
        return self._transport.retries

    @property
    def stall_timeout(self) -> float:
        return self._transport.stall_timeout

    @property
    def connect_timeout(self) -> float:
        return self._transport.connect_timeout

    # -- lifecycle

    async def __aenter__(self) -> AsyncArtifactClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close live event streams and the HTTP session (if this client created it)."""
        for stream in list(self._streams):
            await stream.aclose()
        await self._transport.close()

    # -- publishing

    async def publish(
        self,
        path_or_fileobj: Source,
        *,
        name: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        derived_from: Iterable[str | ArtifactRef | Artifact] | None = None,
        mime: str | None = None,
        idempotency_key: str | None = None,
        progress: Progress | None = None,
        artifact_type: str | None = None,
    ) -> ArtifactRef:
        """Publish a file (path, binary file object or bytes) and return its reference.

        The bytes are streamed in 1 MiB chunks (bounded memory for any size), with
        ``Content-Length`` when the size is known. One ``Idempotency-Key`` serves
        every retry of this call, so a retry after a lost answer returns the same
        artifact and charges the quota once. A path is reopened and a seekable
        file object rewound for each attempt; a non-seekable one is not retried
        once bytes were sent. The sha256 the gateway computed is checked against
        the bytes sent (:class:`DigestMismatch` otherwise). ``artifact_type`` labels
        the artifact (a slug such as ``report``, ``plan``, ``dataset`` or ``log``).
        """
        return await uploads.publish(
            self._transport,
            path_or_fileobj,
            name=name,
            description=description,
            metadata=metadata,
            derived_from=derived_from,
            mime=mime,
            idempotency_key=idempotency_key,
            progress=progress,
            artifact_type=artifact_type,
        )

    async def publish_text(
        self,
        name: str,
        content: str,
        *,
        mime: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        derived_from: Iterable[str | ArtifactRef | Artifact] | None = None,
        artifact_type: str | None = None,
        idempotency_key: str | None = None,
    ) -> ArtifactRef:
        """Publish a small text artifact from a string, in one JSON request.

        ``mime`` defaults to ``text/markdown`` on the gateway. The UTF-8 bytes of
        ``content`` may be at most the gateway's JSON content limit (1 MiB by
        default, :class:`ArtifactTooLarge` beyond: use :meth:`publish`). Same
        credential, quota, idempotency and answer as :meth:`publish`.
        """
        return await uploads.publish_text(
            self._transport,
            name,
            content,
            mime=mime,
            description=description,
            metadata=metadata,
            derived_from=derived_from,
            artifact_type=artifact_type,
            idempotency_key=idempotency_key,
        )

    # -- reading

    async def get(self, artifact_id: str) -> Artifact:
        """The artifact (also a deleted one's tombstone, with ``state == "deleted"``)."""
        t = self._transport
        return Artifact.from_json(await t.call("GET", t.url("artifacts", artifact_id)))

    async def list(
        self,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        job_id: str | None = None,
        attempt: int | None = None,
        session_id: str | None = None,
        owner: str | None = None,
        mime_class: str | None = None,
        name_prefix: str | None = None,
        include_deleted: bool = False,
        page_size: int | None = None,
        artifact_type: str | None = None,
    ) -> AsyncIterator[Artifact]:
        """Every matching artifact, newest first, following ``next_cursor`` page by page."""
        params: dict[str, str] = {
            key: str(value)
            for key, value in (
                ("run_id", run_id),
                ("step_id", step_id),
                ("job_id", job_id),
                ("attempt", attempt),
                ("session_id", session_id),
                ("owner", owner),
                ("mime_class", mime_class),
                ("name_prefix", name_prefix),
                ("artifact_type", artifact_type),
                ("limit", page_size),
            )
            if value is not None
        }
        if include_deleted:
            params["include_deleted"] = "true"
        t = self._transport
        url = t.url("artifacts")
        while True:
            page = await t.call("GET", url, params=params)
            for item in page.get("items", ()):
                yield Artifact.from_json(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            params["cursor"] = str(cursor)

    async def quota(self) -> Quota:
        t = self._transport
        return Quota.from_json(await t.call("GET", t.url("artifacts", "quota")))

    async def signed_url(self, artifact_id: str, expires_in: int = 300) -> SignedURL:
        """Mint a URL that fetches the content without a credential for ``expires_in`` s."""
        t = self._transport
        data = await t.call(
            "POST",
            t.url("artifacts", artifact_id, "signed-url"),
            json_body={"expires_in": expires_in},
        )
        absolute = t.base_url.join(URL(str(data["url"]), encoded=True))
        expires_at = timestamp(data.get("expires_at"))
        assert expires_at is not None
        return SignedURL(url=str(absolute), expires_at=expires_at)

    async def delete(self, artifact_id: str) -> None:
        """Soft-delete the artifact (its tombstone stays); deleting twice is fine."""
        t = self._transport
        await t.call("DELETE", t.url("artifacts", artifact_id))

    def events(self, after: int = 0, type: str | None = None) -> EventStream:
        """Live events after ``after`` (server-sent events), reconnecting when dropped.

        ``async with client.events() as stream: async for event in stream: ...``
        (or ``async for`` directly and :meth:`EventStream.aclose` when done).
        """
        stream = EventStream(self._transport, after=after, event_type=type)
        self._streams.add(stream)
        return stream

    # -- downloading

    async def read_content(
        self, artifact: str | Artifact, *, max_bytes: int = 1024 * 1024
    ) -> ArtifactContent:
        """The whole content of a small artifact in memory, verified by sha256.

        An artifact larger than ``max_bytes`` raises :class:`ArtifactTooLarge`
        before any byte is fetched (use :meth:`download` for those). The answer
        also carries the gateway's serving decision: ``inline`` text (valid UTF-8)
        or image, or an attachment.
        """
        if isinstance(artifact, str):
            artifact = await self.get(artifact)
        return await downloads.read_content(self._transport, artifact, max_bytes)

    async def download(
        self,
        artifact_id: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Download the content to ``dest`` (a file path, or a directory to use the name).

        The bytes go to ``.<name>.part`` beside the destination; an interrupted
        transfer resumes there with ``Range`` (the ``ETag`` must still name the
        same content, else it starts over). The result is renamed into place only
        when its sha256 matches both the ``Repr-Digest`` header and the sha256 the
        gateway recorded; otherwise the partial file is removed and
        :class:`DigestMismatch` raised. An existing file at the destination is
        replaced. After a network failure (:class:`Unavailable`) or an interruption
        the partial file stays, and the next call for the same destination
        resumes it. Returns the final path.
        """
        artifact = await self.get(artifact_id)
        return await downloads.download(self._transport, artifact, dest, progress)

    async def download_to(
        self,
        artifact: str | Artifact,
        sink: IO[bytes],
        *,
        progress: Progress | None = None,
    ) -> Artifact:
        """Write the content to ``sink``, a binary file object (``sys.stdout.buffer``, a
        pipe, a socket file), as it arrives; verify its sha256 at the end.

        The bytes reach ``sink`` before they are verified, since it cannot be
        rewound: :class:`DigestMismatch` at the end means that what was written is
        not the artifact. A retry resumes after the bytes already written, which are
        never written twice. Returns the artifact (``artifact`` may be one already
        read, which saves a request).
        """
        if isinstance(artifact, str):
            artifact = await self.get(artifact)
        await downloads.download_to(self._transport, artifact, sink, progress)
        return artifact
