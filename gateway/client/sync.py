"""A synchronous wrapper around :class:`~gateway.client.core.AsyncArtifactClient`.

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
from typing import Any, Generic, TypeVar

from gateway.client.core import (
    Artifact,
    ArtifactRef,
    AsyncArtifactClient,
    Event,
    EventStream,
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
    """Blocking twin of :class:`AsyncArtifactClient`: same arguments, same methods."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        self._async = AsyncArtifactClient(url, **kwargs)  # validates configuration first
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
            )
        )

    def get(self, artifact_id: str) -> Artifact:
        return self._runner.run(self._async.get(artifact_id))

    def list(self, **filters: Any) -> SyncIterator[Artifact]:
        """See :meth:`AsyncArtifactClient.list` (same keyword filters)."""
        return SyncIterator(self._runner, self._async.list(**filters))

    def download(
        self,
        artifact_id: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """See :meth:`AsyncArtifactClient.download`."""
        return self._runner.run(self._async.download(artifact_id, dest, progress=progress))

    def signed_url(self, artifact_id: str, expires_in: int = 300) -> SignedURL:
        return self._runner.run(self._async.signed_url(artifact_id, expires_in))

    def delete(self, artifact_id: str) -> None:
        self._runner.run(self._async.delete(artifact_id))

    def quota(self) -> Quota:
        return self._runner.run(self._async.quota())

    def events(self, after: int = 0, type: str | None = None) -> SyncIterator[Event]:
        """Blocking iterator over live events; see :meth:`AsyncArtifactClient.events`."""
        stream: EventStream = self._async.events(after=after, type=type)
        return SyncIterator(self._runner, stream)
