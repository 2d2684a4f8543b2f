"""Principal tokens (``Authorization: Bearer``): verification, scopes, projects.

Keys come from configuration: an HS256 shared secret and/or a JWKS file of
RS256 / EdDSA / ES256 public keys selected by ``kid``. The algorithm is pinned
by the key that verifies, never taken from the token: a token whose ``kid``
names a JWKS key is verified with that key's algorithm only; any other token is
verified as HS256 with the shared secret only. The two families are never mixed
in one verification, so RS/HS confusion cannot happen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from gateway.errors import Forbidden, Unauthenticated
from leases import COMPACT_JWT

SCOPES = (
    "artifacts:read",
    "artifacts:write",
    "artifacts:delete",
    "artifacts:admin",
    "claims:write",
)
MAX_TOKEN_LENGTH = 8192
OwnerKind = Literal["user", "agent", "service"]
_KTY_ALGORITHMS = {"RSA": "RS256", "OKP": "EdDSA", "EC": "ES256"}
_ALLOWED_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "EdDSA", "ES256", "ES384"}


def owner_kind_of(sub: str) -> OwnerKind:
    """The owner kind of a principal's artifacts, from its ``sub`` prefix."""
    prefix = sub.partition(":")[0]
    if prefix == "agent":
        return "agent"
    if prefix in ("svc", "service"):
        return "service"
    return "user"


@dataclass(frozen=True, kw_only=True)
class Principal:
    """An authenticated caller holding a principal token."""

    sub: str
    scopes: frozenset[str]
    projects: frozenset[str]
    expires_at: float | None = None
    """When the gateway stops accepting the token (its ``exp`` plus the leeway), in
    seconds since the epoch; a live event stream ends then."""

    @property
    def owner_kind(self) -> OwnerKind:
        return owner_kind_of(self.sub)

    def in_project(self, project: str) -> bool:
        return "*" in self.projects or project in self.projects

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, project: str, scope: str) -> None:
        """Raise Forbidden unless this principal holds ``scope`` in ``project``."""
        if not self.in_project(project):
            raise Forbidden(f"{self.sub} is not a member of project {project}")
        if not self.has(scope):
            raise Forbidden(f"the token lacks the {scope} scope")


class PrincipalVerifier:
    def __init__(
        self,
        *,
        secret: bytes | None,
        jwks: Sequence[Mapping[str, Any]],
        issuer: str,
        audience: str,
        leeway_seconds: int,
        max_ttl_seconds: int,
    ) -> None:
        self._secret = secret
        self._max_ttl = max_ttl_seconds
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        self._keys: dict[str, tuple[Any, str]] = {}
        for jwk in jwks:
            algorithm = str(jwk.get("alg") or _KTY_ALGORITHMS[str(jwk["kty"])])
            if algorithm not in _ALLOWED_ASYMMETRIC:
                raise ValueError(f"JWKS key {jwk['kid']!r}: algorithm {algorithm} not allowed")
            self._keys[str(jwk["kid"])] = (jwt.PyJWK(dict(jwk), algorithm).key, algorithm)

    def verify(self, token: str) -> Principal:
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("token too long")
        if not COMPACT_JWT.fullmatch(token):
            raise Unauthenticated("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, RecursionError):
            raise Unauthenticated("malformed token") from None
        kid = header.get("kid")
        pinned = self._keys.get(kid) if isinstance(kid, str) else None
        if pinned is not None:
            key, algorithm = pinned
        elif self._secret is not None:
            key, algorithm = self._secret, "HS256"
        else:
            raise Unauthenticated("unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except (jwt.PyJWTError, ValueError, RecursionError) as exc:
            raise Unauthenticated(f"token rejected ({type(exc).__name__})") from None
        return _principal(claims, self._leeway, self._max_ttl)


def _principal(claims: Mapping[str, Any], leeway: int, max_ttl: int) -> Principal:
    sub, scope, projects = claims.get("sub"), claims.get("scope", ""), claims.get("projects", [])
    if not isinstance(sub, str) or not sub or len(sub) > 255:
        raise Unauthenticated("sub must be a non-empty string")
    if not isinstance(scope, str):
        raise Unauthenticated("scope must be a space-separated string")
    if not isinstance(projects, list) or not all(isinstance(p, str) for p in projects):
        raise Unauthenticated("projects must be a list of strings")
    iat = claims.get("iat")
    if not isinstance(iat, int | float) or iat > time.time() + leeway:
        raise Unauthenticated("token issued in the future")
    if claims["exp"] - iat > max_ttl:
        raise Unauthenticated(f"token lifetime (exp - iat) exceeds the maximum of {max_ttl} s")
    return Principal(
        sub=sub,
        scopes=frozenset(scope.split()),
        projects=frozenset(projects),
        expires_at=float(claims["exp"]) + leeway,
    )


def mint_principal_token(
    *,
    secret: bytes,
    sub: str,
    scopes: Sequence[str],
    projects: Sequence[str],
    issuer: str,
    audience: str,
    ttl_seconds: int,
) -> str:
    """An HS256 principal token, as the identity provider would issue (development)."""
    now = int(time.time())
    return jwt.encode(
        {
            "sub": sub,
            "scope": " ".join(scopes),
            "projects": list(projects),
            "iss": issuer,
            "aud": audience,
            "iat": now,
            "exp": now + ttl_seconds,
        },
        secret,
        algorithm="HS256",
    )
