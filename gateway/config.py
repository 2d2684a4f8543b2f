"""Configuration: the ``GATEWAY_*`` environment variables, read and validated once.

``Config.from_env`` is the only place that reads the environment. Every problem
raises :class:`ConfigError` naming the variable, and the CLI turns it into one
line on stderr and exit status 2. Handlers never read ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from gateway.logs import redact_urls

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("json", "console")


class ConfigError(ValueError):
    """One or more configuration variables are missing or have a bad value.

    ``variable`` and ``problem`` are the first one; ``problems`` lists them all,
    so one message names every variable to fix.
    """

    def __init__(
        self, variable: str, problem: str, *, more: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self.problems = ((variable, problem), *more)
        if more:
            lines = [f"{len(self.problems)} settings need fixing:"]
            lines += [f"  {name}: {text}" for name, text in self.problems]
            message = "\n".join(lines)
        else:
            message = f"{variable}: {problem}"
        super().__init__(message)
        self.variable = variable
        self.problem = problem

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        (variable, problem), *more = problems
        return cls(variable, problem, more=tuple(more))


Requirement = Callable[["Config"], list[tuple[str, str]]]
"""A check of a whole config: the (variable, problem) pairs it finds missing."""


@dataclass(frozen=True, kw_only=True)
class SigningKey:
    """A named secret; ``kid`` selects it, so keys can rotate."""

    kid: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".gateway-data")
    database_url: str | None = field(default=None, repr=False)
    db_pool_min: int = 2
    db_pool_max: int = 20
    s3_endpoint_url: str | None = None
    s3_bucket: str = "artifacts"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = field(default=None, repr=False)
    s3_secret_access_key: str | None = field(default=None, repr=False)
    s3_part_size: int = 8 * 1024 * 1024
    s3_part_concurrency: int = 4
    s3_buffer_budget_bytes: int = 128 * 1024 * 1024
    s3_buffer_wait_seconds: float = 10.0
    s3_buffer_share: float = 0.5
    s3_buffer_fill_seconds: float = 2.0
    s3_staging_budget_bytes: int = 32 * 1024 * 1024
    backend_timeout_seconds: float = 10.0
    auth_jwt_secret: bytes | None = field(default=None, repr=False)
    auth_jwt_public_keys: tuple[Mapping[str, Any], ...] = field(default=(), repr=False)
    auth_jwt_issuer: str = "mobius"
    auth_jwt_audience: str = "mobius-artifacts"
    auth_leeway_seconds: int = 30
    auth_max_token_ttl_seconds: int = 30 * 86400
    lease_signing_keys: tuple[SigningKey, ...] = field(default=(), repr=False)
    lease_max_ttl_seconds: int = 86400
    lease_cache_seconds: float = 30.0
    url_signing_keys: tuple[SigningKey, ...] = field(default=(), repr=False)
    # Signed-URL mints per principal and replica (gateway.ratelimit); 0: no limit.
    signed_url_mints_per_minute: int = 600
    signed_url_mint_burst: int = 60
    default_quota_bytes: int = 10 * 1024**3
    default_quota_artifacts: int = 1_000_000
    max_artifact_bytes: int = 5 * 1024**3
    max_json_content_bytes: int = 1024 * 1024
    serve_pdf_inline: bool = False
    shutdown_timeout_seconds: float = 30.0
    body_idle_timeout_seconds: float = 60.0
    body_min_rate_bytes_per_second: int = 1024
    body_min_rate_window_seconds: float = 30.0
    keepalive_timeout_seconds: float = 30.0
    gc_interval_seconds: int = 0
    gc_grace_seconds: int = 3600
    # Signed-URL audit rows are kept this long after the URL expired, then the gc
    # sweep prunes them; 0: kept for ever.
    audit_retention_seconds: int = 7_776_000
    # Ended (released, superseded) or expired job claims are kept this long, then
    # pruned; 0: kept for ever.
    claim_retention_seconds: int = 2_592_000
    # An Idempotency-Key lives this long: after it a replay is a new publish, and the
    # gc sweep prunes the key; 0: for ever.
    idempotency_ttl_seconds: int = 86_400
    # Events are kept this long, then pruned; a cursor below the oldest kept answers
    # 410 events_expired. 0: kept for ever.
    events_retention_seconds: int = 2_592_000
    event_streams_per_principal: int = 16
    event_streams_per_project: int = 64
    event_stream_queue_events: int = 256
    events_db_pool_max: int = 2
    log_level: str = "info"
    log_format: str = "json"
    log_format_set: bool = False
    """GATEWAY_LOG_FORMAT was given: ``dev`` in a terminal keeps it instead of console lines."""
    no_color: bool = False
    """NO_COLOR (https://no-color.org) is set: console log lines carry no colours."""
    metrics_port: int | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, required: Sequence[Requirement] = ()
    ) -> Config:
        """Build a config from ``env`` (default: ``os.environ``).

        Raises one ConfigError naming every bad value, and every variable the
        ``required`` checks (e.g. :meth:`missing_backends`) find missing.
        """
        e = _Env(os.environ if env is None else env)
        buffer_wait = e.number("GATEWAY_S3_BUFFER_WAIT_SECONDS", 10.0, low=0.1)
        # A buffer must be taken back before a wait for it runs out.
        default_fill = min(2.0, buffer_wait / 2)
        buffer_fill = e.number("GATEWAY_S3_BUFFER_FILL_SECONDS", default_fill, low=0.1)
        if buffer_fill >= buffer_wait:
            e.problems.append(
                (
                    "GATEWAY_S3_BUFFER_FILL_SECONDS",
                    f"must be below GATEWAY_S3_BUFFER_WAIT_SECONDS "
                    f"({buffer_wait:g}; got {buffer_fill:g})",
                )
            )
        config = cls(
            host=e.text("GATEWAY_HOST", "127.0.0.1"),
            port=e.integer("GATEWAY_PORT", 8080, low=0, high=65535),
            data_dir=Path(e.text("GATEWAY_DATA_DIR", ".gateway-data")),
            database_url=e.optional("GATEWAY_DATABASE_URL"),
            db_pool_min=e.integer("GATEWAY_DB_POOL_MIN", 2, low=0, high=1000),
            db_pool_max=e.integer("GATEWAY_DB_POOL_MAX", 20, low=1, high=1000),
            s3_endpoint_url=e.url("GATEWAY_S3_ENDPOINT_URL"),
            s3_bucket=e.text("GATEWAY_S3_BUCKET", "artifacts"),
            s3_region=e.text("GATEWAY_S3_REGION", "us-east-1"),
            s3_access_key_id=e.optional("GATEWAY_S3_ACCESS_KEY_ID"),
            s3_secret_access_key=e.optional("GATEWAY_S3_SECRET_ACCESS_KEY"),
            s3_part_size=e.integer(
                "GATEWAY_S3_PART_SIZE_BYTES", 8 * 1024 * 1024, low=5 * 1024 * 1024, high=5 * 1024**3
            ),
            s3_part_concurrency=e.integer("GATEWAY_S3_PART_CONCURRENCY", 4, low=1, high=64),
            s3_buffer_budget_bytes=e.integer(
                "GATEWAY_S3_BUFFER_BUDGET_BYTES", 128 * 1024 * 1024, low=5 * 1024 * 1024
            ),
            s3_buffer_wait_seconds=buffer_wait,
            s3_buffer_share=e.number("GATEWAY_S3_BUFFER_SHARE", 0.5, low=0.01, high=1.0),
            s3_buffer_fill_seconds=buffer_fill,
            s3_staging_budget_bytes=e.integer(
                "GATEWAY_S3_STAGING_BUDGET_BYTES", 32 * 1024 * 1024, low=0
            ),
            backend_timeout_seconds=e.number("GATEWAY_BACKEND_TIMEOUT_SECONDS", 10.0, low=0.1),
            auth_jwt_secret=e.secret("GATEWAY_AUTH_JWT_SECRET"),
            auth_jwt_public_keys=e.jwks("GATEWAY_AUTH_JWT_PUBLIC_KEYS"),
            auth_jwt_issuer=e.text("GATEWAY_AUTH_JWT_ISSUER", "mobius"),
            auth_jwt_audience=e.text("GATEWAY_AUTH_JWT_AUDIENCE", "mobius-artifacts"),
            auth_leeway_seconds=e.integer("GATEWAY_AUTH_LEEWAY_SECONDS", 30, low=0, high=300),
            auth_max_token_ttl_seconds=e.integer(
                "GATEWAY_AUTH_MAX_TOKEN_TTL_SECONDS", 30 * 86400, low=60, high=365 * 86400
            ),
            lease_signing_keys=e.keys("GATEWAY_LEASE_SIGNING_KEY", default_kid="lease-1"),
            lease_max_ttl_seconds=e.integer("GATEWAY_LEASE_MAX_TTL_SECONDS", 86400, low=60),
            lease_cache_seconds=e.number("GATEWAY_LEASE_CACHE_SECONDS", 30.0, low=0.0),
            url_signing_keys=e.keys("GATEWAY_URL_SIGNING_KEYS", default_kid="url-1"),
            signed_url_mints_per_minute=e.integer(
                "GATEWAY_SIGNED_URL_MINTS_PER_MINUTE", 600, low=0, high=1_000_000
            ),
            signed_url_mint_burst=e.integer(
                "GATEWAY_SIGNED_URL_MINT_BURST", 60, low=1, high=1_000_000
            ),
            default_quota_bytes=e.integer("GATEWAY_DEFAULT_QUOTA_BYTES", 10 * 1024**3, low=0),
            default_quota_artifacts=e.integer(
                "GATEWAY_DEFAULT_QUOTA_ARTIFACTS", 1_000_000, low=0, high=2**62
            ),
            max_artifact_bytes=e.integer("GATEWAY_MAX_ARTIFACT_BYTES", 5 * 1024**3, low=1),
            max_json_content_bytes=e.integer(
                "GATEWAY_MAX_JSON_CONTENT_BYTES", 1024 * 1024, low=1, high=64 * 1024 * 1024
            ),
            serve_pdf_inline=e.flag("GATEWAY_SERVE_PDF_INLINE", default=False),
            body_idle_timeout_seconds=e.number("GATEWAY_BODY_IDLE_TIMEOUT_SECONDS", 60.0, low=0.1),
            body_min_rate_bytes_per_second=e.integer(
                "GATEWAY_BODY_MIN_RATE_BYTES_PER_SECOND", 1024, low=0
            ),
            body_min_rate_window_seconds=e.number(
                "GATEWAY_BODY_MIN_RATE_WINDOW_SECONDS", 30.0, low=0.1
            ),
            keepalive_timeout_seconds=e.number("GATEWAY_KEEPALIVE_TIMEOUT_SECONDS", 30.0, low=0.1),
            shutdown_timeout_seconds=e.number("GATEWAY_SHUTDOWN_TIMEOUT_SECONDS", 30.0, low=0.0),
            gc_interval_seconds=e.integer("GATEWAY_GC_INTERVAL_SECONDS", 0, low=0),
            gc_grace_seconds=e.integer("GATEWAY_GC_GRACE_SECONDS", 3600, low=0),
            audit_retention_seconds=e.integer(
                "GATEWAY_AUDIT_RETENTION_SECONDS", 7_776_000, low=0, high=100 * 365 * 86400
            ),
            claim_retention_seconds=e.integer(
                "GATEWAY_CLAIM_RETENTION_SECONDS", 2_592_000, low=0, high=100 * 365 * 86400
            ),
            idempotency_ttl_seconds=e.integer(
                "GATEWAY_IDEMPOTENCY_TTL_SECONDS", 86_400, low=0, high=100 * 365 * 86400
            ),
            events_retention_seconds=e.integer(
                "GATEWAY_EVENTS_RETENTION_SECONDS", 2_592_000, low=0, high=100 * 365 * 86400
            ),
            event_streams_per_principal=e.integer(
                "GATEWAY_EVENT_STREAMS_PER_PRINCIPAL", 16, low=1, high=100_000
            ),
            event_streams_per_project=e.integer(
                "GATEWAY_EVENT_STREAMS_PER_PROJECT", 64, low=1, high=100_000
            ),
            event_stream_queue_events=e.integer(
                "GATEWAY_EVENT_STREAM_QUEUE_EVENTS", 256, low=1, high=100_000
            ),
            # one connection is kept for the feeds' reads, so replays need another
            events_db_pool_max=e.integer("GATEWAY_EVENTS_DB_POOL_MAX", 2, low=2, high=100),
            log_level=e.choice("GATEWAY_LOG_LEVEL", "info", LOG_LEVELS),
            log_format=e.choice("GATEWAY_LOG_FORMAT", "json", LOG_FORMATS),
            log_format_set=e.optional("GATEWAY_LOG_FORMAT") is not None,
            no_color=e.optional("NO_COLOR") is not None,
            metrics_port=e.optional_int("GATEWAY_METRICS_PORT", low=1, high=65535),
        )
        problems = list(e.problems)
        named = {name for name, _ in problems}
        for check in required:
            problems += [(name, text) for name, text in check(config) if name not in named]
        if problems:
            raise ConfigError.of(problems)
        return config

    def with_overrides(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)

    def missing_backends(self) -> list[tuple[str, str]]:
        """What ``serve`` and ``gc`` lack to reach configured backends (no embedded parts)."""
        problems = []
        if not self.database_url:
            problems.append(("GATEWAY_DATABASE_URL", "is required"))
        if not self.s3_endpoint_url:
            problems.append(("GATEWAY_S3_ENDPOINT_URL", "is required"))
        if self.s3_access_key_id and not self.s3_secret_access_key:
            problems.append(
                ("GATEWAY_S3_SECRET_ACCESS_KEY", "is required with GATEWAY_S3_ACCESS_KEY_ID")
            )
        if self.s3_secret_access_key and not self.s3_access_key_id:
            problems.append(
                ("GATEWAY_S3_ACCESS_KEY_ID", "is required with GATEWAY_S3_SECRET_ACCESS_KEY")
            )
        return problems

    def missing_keys(self) -> list[tuple[str, str]]:
        """What ``serve`` lacks to verify tokens and sign leases and URLs."""
        problems = []
        if self.auth_jwt_secret is None and not self.auth_jwt_public_keys:
            problems.append(
                (
                    "GATEWAY_AUTH_JWT_SECRET",
                    "is required (or GATEWAY_AUTH_JWT_PUBLIC_KEYS) to verify principal tokens",
                )
            )
        if not self.lease_signing_keys:
            problems.append(("GATEWAY_LEASE_SIGNING_KEY", "is required"))
        if not self.url_signing_keys:
            problems.append(("GATEWAY_URL_SIGNING_KEYS", "is required"))
        return problems

    def require_backends(self) -> None:
        """Raise one ConfigError naming every missing backend variable."""
        if problems := self.missing_backends():
            raise ConfigError.of(problems)

    def require_keys(self) -> None:
        """Raise one ConfigError naming every missing key variable."""
        if problems := self.missing_keys():
            raise ConfigError.of(problems)


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _collecting(fallback: Any) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """A reader of :class:`_Env` that records its ConfigError and returns ``fallback``
    (the default when one is passed), so one run reports every bad variable."""

    def decorate(method: Callable[_P, _T]) -> Callable[_P, _T]:
        @functools.wraps(method)
        def reader(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return method(*args, **kwargs)
            except ConfigError as exc:
                env = args[0]
                assert isinstance(env, _Env)
                env.problems.extend(exc.problems)
                if len(args) > 2:
                    return cast(_T, args[2])
                return cast(_T, kwargs.get("default", fallback))

        return reader

    return decorate


class _Env:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[tuple[str, str]] = []

    def optional(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    @_collecting(None)
    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self.optional_int(name, low=low, high=high)
        return default if value is None else value

    @_collecting(None)
    def optional_int(self, name: str, *, low: int, high: int | None = None) -> int | None:
        raw = self.optional(name)
        if raw is None:
            return None
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(name, f"must be an integer (got {raw!r})") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ConfigError(name, f"must be {bound} (got {value})")
        return value

    @_collecting(None)
    def number(self, name: str, default: float, *, low: float, high: float | None = None) -> float:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(name, f"must be a number (got {raw!r})") from None
        if not value >= low:
            raise ConfigError(name, f"must be at least {low} (got {raw})")
        if high is not None and not value <= high:
            raise ConfigError(name, f"must be at most {high} (got {raw})")
        return value

    @_collecting(None)
    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    @_collecting(None)
    def flag(self, name: str, *, default: bool) -> bool:
        raw = self.optional(name)
        if raw is None:
            return default
        value = raw.lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false (got {raw!r})")

    @_collecting(None)
    def url(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None and not value.startswith(("http://", "https://")):
            shown = redact_urls(value)
            raise ConfigError(name, f"must be an http:// or https:// URL (got {shown!r})")
        return value

    @_collecting(None)
    def secret(self, name: str) -> bytes | None:
        value = self.optional(name)
        if value is None:
            return None
        if len(value) < 32:
            raise ConfigError(name, "must be at least 32 characters long (RFC 7518 3.2)")
        return value.encode()

    @_collecting(())
    def keys(self, name: str, *, default_kid: str) -> tuple[SigningKey, ...]:
        """``kid:secret[,kid:secret...]``; a single value without ``:`` gets ``default_kid``."""
        raw = self.optional(name)
        if raw is None:
            return ()
        items = [item.strip() for item in raw.split(",") if item.strip()]
        keys: list[SigningKey] = []
        for item in items:
            kid, sep, secret = item.partition(":")
            if not sep:
                if len(items) > 1:
                    raise ConfigError(name, "each entry must be kid:secret")
                kid, secret = default_kid, item
            if not kid or len(secret) < 32:
                raise ConfigError(name, f"key {kid!r} needs a kid and a secret of 32+ characters")
            if any(k.kid == kid for k in keys):
                raise ConfigError(name, f"kid {kid!r} appears twice")
            keys.append(SigningKey(kid=kid, secret=secret.encode()))
        return tuple(keys)

    @_collecting(())
    def jwks(self, name: str) -> tuple[Mapping[str, Any], ...]:
        path = self.optional(name)
        if path is None:
            return ()
        try:
            document = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(name, f"cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(name, f"{path} is not valid JSON") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list) or not keys:
            raise ConfigError(name, f"{path} must be a JWKS document with a non-empty 'keys' list")
        for key in keys:
            if not isinstance(key, dict) or not key.get("kid"):
                raise ConfigError(name, f"every key in {path} needs a 'kid'")
            if key.get("kty") not in ("RSA", "OKP", "EC"):
                raise ConfigError(name, f"key {key.get('kid')!r}: kty must be RSA, OKP or EC")
        return tuple(keys)
