"""Lease tokens: JWTs the gateway mints for a job claim and verifies on publish.

A lease token names its claim (``jti`` = lease id), the project (``prj``) and the
worker session (``sub``); its header carries ``typ: mobius-lease+jwt`` and the
``kid`` of the signing key. Verification pins the algorithm (never read from the
token), requires ``exp``/``iat``/``iss``/``aud``/``jti``/``sub``/``prj``, allows a
small clock-skew leeway and refuses a token whose lifetime exceeds the configured
maximum. The token proves who the caller is; whether its claim is still active is
decided by the claim row (see :mod:`leases.claims`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import jwt

from leases.errors import LeaseTokenInvalid

LEASE_TOKEN_TYPE = "mobius-lease+jwt"
LEASE_ISSUER = "mobius-artifact-gateway"
LEASE_AUDIENCE = "mobius-artifacts-lease"
LEASE_ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 4096  # a lease token is ~400 bytes; refuse absurd ones before parsing
COMPACT_JWT = re.compile(r"[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]+\.[A-Za-z0-9_=-]*")
"""A JWS in compact form: three base64url segments. Anything else (bytes that are
not ASCII included) is refused before any parsing."""


@dataclass(frozen=True, kw_only=True)
class LeaseKey:
    kid: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class LeaseTokenClaims:
    lease_id: str
    project: str
    worker_session_id: str
    issued_at: datetime
    expires_at: datetime


class LeaseTokens:
    """Mints and verifies lease tokens. The first key signs; every key verifies."""

    def __init__(
        self,
        keys: Sequence[LeaseKey],
        *,
        max_ttl_seconds: int,
        leeway_seconds: int = 30,
    ) -> None:
        if not keys:
            raise ValueError("at least one lease signing key is required")
        self._keys = {key.kid: key for key in keys}
        self._signing = keys[0]
        self.max_ttl_seconds = max_ttl_seconds
        self._leeway = leeway_seconds

    def mint(
        self,
        *,
        lease_id: str,
        project: str,
        worker_session_id: str,
        issued_at: datetime | None = None,
    ) -> tuple[str, datetime]:
        """Return the token and its ``exp`` (issued_at + the maximum lease lifetime)."""
        iat = int((issued_at or datetime.now(UTC)).timestamp())
        exp = iat + self.max_ttl_seconds
        token = jwt.encode(
            {
                "iss": LEASE_ISSUER,
                "aud": LEASE_AUDIENCE,
                "jti": lease_id,
                "sub": worker_session_id,
                "prj": project,
                "iat": iat,
                "nbf": iat,
                "exp": exp,
            },
            self._signing.secret,
            algorithm=LEASE_ALGORITHM,
            headers={"typ": LEASE_TOKEN_TYPE, "kid": self._signing.kid},
        )
        return token, datetime.fromtimestamp(exp, UTC)

    def verify(self, token: str) -> LeaseTokenClaims:
        """Verify signature, header and claims; raise :class:`LeaseTokenInvalid`."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise LeaseTokenInvalid("token too long")
        if not COMPACT_JWT.fullmatch(token):
            raise LeaseTokenInvalid("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, RecursionError):
            raise LeaseTokenInvalid("malformed token") from None
        if header.get("typ") != LEASE_TOKEN_TYPE:
            raise LeaseTokenInvalid("not a lease token (typ)")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise LeaseTokenInvalid("unknown signing key (kid)")
        try:
            claims = jwt.decode(
                token,
                key.secret,
                algorithms=[LEASE_ALGORITHM],
                audience=LEASE_AUDIENCE,
                issuer=LEASE_ISSUER,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "jti", "sub", "prj"]},
            )
        except jwt.ExpiredSignatureError:
            raise LeaseTokenInvalid("expired") from None
        except (jwt.PyJWTError, ValueError, RecursionError) as exc:
            raise LeaseTokenInvalid(type(exc).__name__) from None
        lease_id, project, sub = claims["jti"], claims["prj"], claims["sub"]
        if not all(isinstance(v, str) and v for v in (lease_id, project, sub)):
            raise LeaseTokenInvalid("jti, sub and prj must be non-empty strings")
        iat, exp = claims["iat"], claims["exp"]
        if not isinstance(iat, int | float) or iat > time.time() + self._leeway:
            raise LeaseTokenInvalid("issued in the future")
        if exp - iat > self.max_ttl_seconds:
            raise LeaseTokenInvalid("lifetime exceeds the maximum lease lifetime")
        return LeaseTokenClaims(
            lease_id=lease_id,
            project=project,
            worker_session_id=sub,
            issued_at=datetime.fromtimestamp(iat, UTC),
            expires_at=datetime.fromtimestamp(exp, UTC),
        )
