"""A synchronous wrapper around :class:`~mobius_artifacts.client.AsyncArtifactClient`.

:class:`ArtifactClient` owns a private event loop running in a background
(daemon) thread, started by the constructor and stopped by :meth:`close` (or at
interpreter exit). Every method submits the matching coroutine to that loop and
blocks until it finishes. One long-lived loop, rather than ``asyncio.run`` per
call, keeps the HTTP connection pool across calls and works even when the caller
is itself inside a running event loop (a notebook, an async framework's sync
callback). Methods may be called from several threads at once.

``list()`` and ``events()`` return ordinary iterators; close them (or use them
as context managers) when leaving early, so the open event stream is released.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Generic, TypeVar

from mobius_artifacts.client import AsyncArtifactClient
from mobius_artifacts.events import EventStream
from mobius_artifacts.transport import RetryHook
from mobius_artifacts.values import (
    Artifact,
    ArtifactContent,
    ArtifactRef,
    Event,
    Progress,
    Quota,
    SignedURL,
    Source,
)

T = TypeVar("T")


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="artifact-client-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("ArtifactClient methods cannot be called from its own loop")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:
            # Interrupted (Ctrl-C) or failed: make sure the work stops too.
            future.cancel()
            raise

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self.loop.close()


def _shutdown(runner: _LoopThread, client: AsyncArtifactClient) -> None:
    if runner.loop.is_closed():
        return
    with contextlib.suppress(RuntimeError, concurrent.futures.CancelledError):
        runner.run(client.close())
    runner.stop()


class SyncIterator(Generic[T]):
    """A blocking iterator over an async iterator that lives on the client's loop."""

    def __init__(self, runner: _LoopThread, source: AsyncIterator[T]) -> None:
        self._runner = runner
        self._source = source
        self._done = False

    def __iter__(self) -> SyncIterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        try:
            return self._runner.run(_anext(self._source))
        except StopAsyncIteration:
            self._done = True
            raise StopIteration from None

    def close(self) -> None:
        if self._done:
            return
        self._done = True
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            self._runner.run(aclose())

    def __enter__(self) -> SyncIterator[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def _anext(source: AsyncIterator[T]) -> T:
    return await source.__anext__()


class ArtifactClient:
    """Blocking twin of :class:`AsyncArtifactClient`: same arguments, same methods.

    It takes no ``session``: an :class:`aiohttp.ClientSession` belongs to the event
    loop it was made in, and this client runs on a loop of its own.
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
        env: Mapping[str, str] | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        # the configuration is validated before a thread is started
        self._async = AsyncArtifactClient(
            url,
            token=token,
            lease_token=lease_token,
            project=project,
            retries=retries,
            stall_timeout=stall_timeout,
            connect_timeout=connect_timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            ca_bundle=ca_bundle,
            env=env,
            on_retry=on_retry,
        )
        self._runner = _LoopThread()
        self._finalizer = weakref.finalize(self, _shutdown, self._runner, self._async)

    @property
    def project(self) -> str:
        return self._async.project

    @property
    def async_client(self) -> AsyncArtifactClient:
        return self._async

    def close(self) -> None:
        """Close the HTTP session and stop the background loop."""
        self._finalizer()

    def __enter__(self) -> ArtifactClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def publish(
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
        """See :meth:`AsyncArtifactClient.publish`."""
        return self._runner.run(
            self._async.publish(
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
        )

    def publish_text(
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
        """See :meth:`AsyncArtifactClient.publish_text`."""
        return self._runner.run(
            self._async.publish_text(
                name,
                content,
                mime=mime,
                description=description,
                metadata=metadata,
                derived_from=derived_from,
                artifact_type=artifact_type,
                idempotency_key=idempotency_key,
            )
        )

    def get(self, artifact_id: str) -> Artifact:
        """See :meth:`AsyncArtifactClient.get`."""
        return self._runner.run(self._async.get(artifact_id))

    def list(
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
    ) -> SyncIterator[Artifact]:
        """See :meth:`AsyncArtifactClient.list`."""
        return SyncIterator(
            self._runner,
            self._async.list(
                run_id=run_id,
                step_id=step_id,
                job_id=job_id,
                attempt=attempt,
                session_id=session_id,
                owner=owner,
                mime_class=mime_class,
                name_prefix=name_prefix,
                include_deleted=include_deleted,
                page_size=page_size,
                artifact_type=artifact_type,
            ),
        )

    def download(
        self,
        artifact_id: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """See :meth:`AsyncArtifactClient.download`."""
        return self._runner.run(self._async.download(artifact_id, dest, progress=progress))

    def download_to(
        self,
        artifact: str | Artifact,
        sink: IO[bytes],
        *,
        progress: Progress | None = None,
    ) -> Artifact:
        """See :meth:`AsyncArtifactClient.download_to` (``on_retry`` and ``progress`` are
        called on the client's own thread)."""
        return self._runner.run(self._async.download_to(artifact, sink, progress=progress))

    def read_content(
        self, artifact: str | Artifact, *, max_bytes: int = 1024 * 1024
    ) -> ArtifactContent:
        """See :meth:`AsyncArtifactClient.read_content`."""
        return self._runner.run(self._async.read_content(artifact, max_bytes=max_bytes))

    def signed_url(self, artifact_id: str, expires_in: int = 300) -> SignedURL:
        """See :meth:`AsyncArtifactClient.signed_url`."""
        return self._runner.run(self._async.signed_url(artifact_id, expires_in))

    def delete(self, artifact_id: str) -> None:
        """See :meth:`AsyncArtifactClient.delete`."""
        self._runner.run(self._async.delete(artifact_id))

    def quota(self) -> Quota:
        """See :meth:`AsyncArtifactClient.quota`."""
        return self._runner.run(self._async.quota())

    def events(self, after: int = 0, type: str | None = None) -> SyncIterator[Event]:
        """Blocking iterator over live events; see :meth:`AsyncArtifactClient.events`."""
        stream: EventStream = self._async.events(after=after, type=type)
        return SyncIterator(self._runner, stream)
