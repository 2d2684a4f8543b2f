"""Signed content URLs: HMAC-SHA256 under keys used for nothing else.

The signature covers the method, project, artifact id, expiry, the minting
principal and the artifact's signing epoch. The URL carries only ``exp``, ``kid``
and ``sig``: the minting principal is found through the audit row of the mint
(looked up by the SHA-256 of the signature, never the signature itself), so a URL
that was not minted here cannot verify even if its HMAC did. Bumping the
artifact's epoch revokes every URL minted before; removing a key from
``GATEWAY_URL_SIGNING_KEYS`` retires every URL it signed. Comparisons are
constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import SigningKey
from gateway.numbers import parse_decimal

SIGNED_METHOD = "GET"  # HEAD is verified as GET
MAX_EXPIRES_IN = 3600
MAX_EXP_DIGITS = 12
DEFAULT_EXPIRES_IN = 300


@dataclass(frozen=True, kw_only=True)
class SignedParams:
    exp: int
    kid: str
    sig: str


def _canonical(project: str, artifact_id: str, exp: int, principal: str, epoch: int) -> bytes:
    return "\n".join(
        (
            "mobius-signed-url-v1",
            SIGNED_METHOD,
            project,
            artifact_id,
            str(exp),
            principal,
            str(epoch),
        )
    ).encode()


def signature(
    key: SigningKey, *, project: str, artifact_id: str, exp: int, principal: str, epoch: int
) -> str:
    mac = hmac.new(
        key.secret, _canonical(project, artifact_id, exp, principal, epoch), hashlib.sha256
    )
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def sig_hash(sig: str) -> str:
    return hashlib.sha256(sig.encode()).hexdigest()


def parse(query: dict[str, str]) -> SignedParams | None:
    """The signed-URL parameters of a query, None when there are none, ValueError if bad."""
    if not any(name in query for name in ("exp", "kid", "sig")):
        return None
    exp, kid, sig = query.get("exp", ""), query.get("kid", ""), query.get("sig", "")
    expires = parse_decimal(exp, max_digits=MAX_EXP_DIGITS)  # ASCII digits only
    if expires is None or not (kid and sig and len(sig) <= 128):
        raise ValueError("malformed signed URL")
    return SignedParams(exp=expires, kid=kid, sig=sig)


def verify(
    keys: Sequence[SigningKey],
    params: SignedParams,
    *,
    project: str,
    artifact_id: str,
    principal: str,
    epoch: int,
) -> bool:
    key = next((k for k in keys if k.kid == params.kid), None)
    if key is None:
        return False
    expected = signature(
        key,
        project=project,
        artifact_id=artifact_id,
        exp=params.exp,
        principal=principal,
        epoch=epoch,
    )
    return hmac.compare_digest(expected.encode(), params.sig.encode())
