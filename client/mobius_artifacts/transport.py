"""One client's HTTP plumbing: the session, the gateway's URLs, credentials, errors, retries.

Transient failures (connection errors, timeouts, a stalled transfer, HTTP 429,
502, 503 and 504) are retried ``retries`` times with exponential backoff and full
jitter, honouring ``Retry-After``; every other 4xx/5xx answer raises at once the
:mod:`mobius_artifacts.errors` class of its problem ``code``. Retries exhausted
raise :class:`~mobius_artifacts.errors.Unavailable`; a TLS failure (an untrusted
certificate, say) raises it at once, since another attempt would fail the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import random
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

import aiohttp
from yarl import URL

from mobius_artifacts._version import __version__
from mobius_artifacts.config import Settings
from mobius_artifacts.errors import ArtifactError, ConfigurationError, Unavailable, error_for
from mobius_artifacts.values import Progress

if TYPE_CHECKING:
    from aiohttp.client import _RequestContextManager

LEASE_HEADER: Final = "X-Mobius-Lease-Token"
CHUNK_SIZE: Final = 1024 * 1024
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER: Final = 300.0
MAX_ERROR_BODY: Final = 64 * 1024
USER_AGENT: Final = f"mobius-artifacts/{__version__} aiohttp/{aiohttp.__version__}"

T = TypeVar("T")


class Stalled(Exception):
    """No upload or download progress for ``stall_timeout`` seconds."""


class Retryable(Exception):
    """One failed attempt that another attempt may fix."""

    def __init__(
        self,
        *,
        error: ArtifactError | None = None,
        cause: BaseException | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(str(error or cause))
        self.error = error
        self.cause = cause
        self.retry_after = retry_after

    def describe(self, base: URL) -> str:
        """What went wrong, in one phrase naming the gateway (a refused connection says so)."""
        if self.error is not None:
            return f"{self.error.detail} (HTTP {self.error.status})"
        return describe_failure(self.cause, base)

    def notice(self, base: URL) -> Unavailable:
        """The failure of one attempt, before any retry gave up (for :data:`RetryHook`)."""
        status = self.error.status if self.error is not None else None
        rid = self.error.request_id if self.error is not None else None
        return Unavailable(self.describe(base), status=status, request_id=rid)

    def unavailable(self, attempts: int, base: URL) -> Unavailable:
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        if self.error is not None:
            status = self.error.status
            return Unavailable(
                f"{self.error.detail} (HTTP {status}, gave up after {tries})",
                status=status,
                request_id=self.error.request_id,
            )
        return Unavailable(f"{describe_failure(self.cause, base)} (gave up after {tries})")


def describe_failure(cause: BaseException | None, base: URL) -> str:
    """A transport failure in words: "cannot reach the gateway at URL: connection refused
    (is it running?)", a name that does not resolve, a timeout, a stalled transfer."""
    if isinstance(cause, Stalled):
        return f"gateway at {base}: {cause}"
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        return f"cannot reach the gateway at {base}: the name {base.host} does not resolve"
    if isinstance(cause, aiohttp.ClientConnectorError):
        if cause.os_error.errno == errno.ECONNREFUSED:
            return f"cannot reach the gateway at {base}: connection refused (is it running?)"
        reason = cause.os_error.strerror or str(cause.os_error) or type(cause.os_error).__name__
        return f"cannot reach the gateway at {base}: {reason}"
    if isinstance(cause, asyncio.TimeoutError):
        return f"gateway at {base} did not answer in time"
    what = f"{type(cause).__name__}: {cause}" if cause is not None else "no answer"
    return f"gateway at {base} unreachable: {what}"


RetryHook = Callable[[Unavailable, int, float], None]
"""Called before each retry with the failure, the number of failures so far and the
seconds until the next attempt (e.g. to say "retrying…" on a terminal)."""


# Errors of one attempt that are worth another attempt. TLS verification errors
# are not: they will fail the same way again (catch aiohttp.ClientSSLError first).
TRANSIENT = (aiohttp.ClientError, asyncio.TimeoutError, Stalled)


def as_retryable(exc: BaseException) -> Retryable:
    return exc if isinstance(exc, Retryable) else Retryable(cause=exc)


_DIGITS: Final = re.compile(r"[0-9]{1,19}")


def decimal(value: str) -> int | None:
    """``value`` as an integer when it is 1 to 19 ASCII digits, else None.

    ``str.isdigit`` and ``int`` also take Unicode digits (``١٢``); a server's
    numbers are ASCII.
    """
    return int(value) if _DIGITS.fullmatch(value) else None


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if (seconds := decimal(value)) is not None:
        return min(float(seconds), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), MAX_RETRY_AFTER)


async def read_json(resp: aiohttp.ClientResponse) -> Any:
    """The JSON body of a successful answer; a ``protocol_error`` when it is not JSON."""
    try:
        return json.loads(await resp.read())
    except ValueError:
        raise ArtifactError(
            f"expected JSON from {resp.url.path}, got {resp.content_type}",
            code="protocol_error",
            status=resp.status,
            request_id=resp.headers.get("X-Request-ID"),
        ) from None


class Activity:
    """Progress of one attempt: bytes moved, when they last moved, and the sha256."""

    def __init__(self, progress: Progress | None, total: int | None, start: int = 0) -> None:
        self._loop = asyncio.get_running_loop()
        self.progress = progress
        self.total = total
        self.done = start
        self.last = self._loop.time()
        self.sha256: str | None = None
        self.error: BaseException | None = None
        if progress is not None:
            progress(start, total)

    def touch(self) -> None:
        self.last = self._loop.time()

    def advance(self, n: int) -> None:
        self.done += n
        self.last = self._loop.time()
        if self.progress is not None:
            self.progress(self.done, self.total)


class Transport:
    """The HTTP session of one client and everything every request shares.

    The session is created on first use, in the running event loop, unless one is
    given (it is then not closed here). Every request carries the configured TLS
    verification and forward proxy.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        retries: int,
        stall_timeout: float,
        connect_timeout: float,
        backoff_base: float,
        backoff_max: float,
        session: aiohttp.ClientSession | None,
        on_retry: RetryHook | None = None,
    ) -> None:
        if retries < 0 or stall_timeout <= 0 or connect_timeout <= 0:
            raise ConfigurationError("retries must be >= 0 and timeouts > 0")
        self.settings = settings
        self.base_url = settings.base_url
        self.project = settings.project
        self.retries = retries
        self.stall_timeout = stall_timeout
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._session = session
        self._owns_session = session is None
        self.on_retry = on_retry
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=stall_timeout
        )
        # for bodies that may pause longer than stall_timeout (watched separately)
        self.connect_timeout_only = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise ConfigurationError("the aiohttp session given to the client is closed")
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    def request(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        timeout: aiohttp.ClientTimeout,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        json_body: Any = None,
    ) -> _RequestContextManager:
        """One request (``async with`` it, or await it and close the response)."""
        settings = self.settings
        proxy_headers = None
        if settings.proxy_authorization is not None:
            credentials = {"Proxy-Authorization": settings.proxy_authorization}
            if url.scheme == "https":  # for the CONNECT that opens the tunnel
                proxy_headers = credentials
            else:  # the request itself goes to the proxy
                headers = {**headers, **credentials}
        return self.session().request(
            method,
            url,
            params=params,
            data=data,
            json=json_body,
            headers=headers,
            timeout=timeout,
            ssl=settings.ssl,
            proxy=settings.proxy,
            proxy_headers=proxy_headers,
        )

    # -- the gateway's addresses and credentials

    def url(self, *segments: str) -> URL:
        """``/v1/projects/{project}/…`` under the base URL, each segment escaped."""
        path = "/v1/projects/" + "/".join(quote(s, safe="") for s in (self.project, *segments))
        return URL(str(self.base_url).rstrip("/") + path, encoded=True)

    def read_headers(self) -> dict[str, str]:
        token = self.settings.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def publish_headers(self) -> dict[str, str]:
        if self.settings.lease_token:
            return {LEASE_HEADER: self.settings.lease_token}
        return self.read_headers()

    # -- errors and retries

    def backoff(self, failures: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (failures - 1))
        return random.uniform(0, ceiling)

    async def raise_for(self, resp: aiohttp.ClientResponse) -> None:
        """Raise the answer's error (a retryable one for 429/502/503/504)."""
        if resp.status < 400:
            return
        body: Mapping[str, Any] | None = None
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            raw = await resp.content.read(MAX_ERROR_BODY)
            with contextlib.suppress(ValueError):
                parsed = json.loads(raw)
                body = parsed if isinstance(parsed, dict) else None
        error = error_for(
            resp.status, body, reason=resp.reason, request_id=resp.headers.get("X-Request-ID")
        )
        if resp.status in RETRY_STATUSES:
            raise Retryable(error=error, retry_after=retry_after(resp.headers.get("Retry-After")))
        raise error

    async def retrying(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        may_retry: Callable[[], bool] | None = None,
        progressed: Callable[[], bool] | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or the retries run out.

        ``may_retry`` vetoes another attempt (e.g. a stream that cannot be re-read);
        ``progressed`` says the failed attempt moved bytes, which resets the count.
        """
        failures = 0
        while True:
            try:
                return await attempt()
            except aiohttp.ClientSSLError as exc:
                raise Unavailable(f"TLS failure talking to {self.base_url}: {exc}") from exc
            except (Retryable, *TRANSIENT) as exc:
                failure = as_retryable(exc)
            if progressed is not None and progressed():
                failures = 0
            failures += 1
            if failures > self.retries or (may_retry is not None and not may_retry()):
                raise failure.unavailable(failures, self.base_url) from (failure.cause or failure)
            delay = self.backoff(failures, failure.retry_after)
            if self.on_retry is not None:
                self.on_retry(failure.notice(self.base_url), failures, delay)
            await asyncio.sleep(delay)

    async def call(
        self,
        method: str,
        url: URL,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
    ) -> Any:
        """A JSON request with the read credential, retried; its JSON answer (``None``: 204)."""

        async def attempt() -> Any:
            async with self.request(
                method,
                url,
                params=params,
                json_body=json_body,
                headers=self.read_headers(),
                timeout=self.timeout,
            ) as resp:
                await self.raise_for(resp)
                if resp.status == 204:
                    return None
                return await read_json(resp)

        return await self.retrying(attempt)

    async def watched(self, work: Awaitable[T], activity: Activity) -> T:
        """Await ``work``, cancelling it when ``activity`` stalls for ``stall_timeout``."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                remaining = activity.last + self.stall_timeout - asyncio.get_running_loop().time()
                if remaining <= 0:
                    task.cancel()
                    await asyncio.wait({task})
                    raise Stalled(f"no progress for {self.stall_timeout:g} s")
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
