"""Lease tokens and principal tokens: everything forged is refused."""

import base64
import json
import time
import warnings

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from gateway.auth import PrincipalVerifier, mint_principal_token
from gateway.errors import ApiError
from leases import LeaseKey, LeaseTokenInvalid, LeaseTokens

KEY = LeaseKey(kid="k1", secret=b"lease-secret-0123456789abcdef-0123456789")
SECRET = b"principal-secret-0123456789abcdef-012345"


def tokens(**kw) -> LeaseTokens:
    return LeaseTokens([KEY], max_ttl_seconds=3600, **kw)


def forge(claims: dict, *, key=KEY.secret, headers=None, algorithm="HS256") -> str:
    base = {"typ": "mobius-lease+jwt", "kid": "k1"}
    with warnings.catch_warnings():  # HS512 wants a longer key; the forgery does not care
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(claims, key, algorithm=algorithm, headers={**base, **(headers or {})})


def lease_claims(**over) -> dict:
    now = int(time.time())
    claims = {
        "iss": "mobius-artifact-gateway",
        "aud": "mobius-artifacts-lease",
        "jti": "lse_1",
        "sub": "ws_1",
        "prj": "demo",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def test_lease_token_round_trip_and_header() -> None:
    token, exp = tokens().mint(lease_id="lse_1", project="demo", worker_session_id="ws_1")
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "mobius-lease+jwt" and header["kid"] == "k1"
    claims = tokens().verify(token)
    assert (claims.lease_id, claims.project, claims.worker_session_id) == ("lse_1", "demo", "ws_1")
    assert claims.expires_at == exp


def _unsigned(claims: dict) -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'mobius-lease+jwt', 'kid': 'k1'})}.{b64(claims)}."


@pytest.mark.parametrize(
    "make",
    [
        lambda: forge(lease_claims(), key=b"another-secret-0123456789abcdef-0123456789"),
        lambda: _unsigned(lease_claims()),
        lambda: forge(lease_claims(jti=None)),
        lambda: forge(lease_claims(prj=None)),
        lambda: forge(lease_claims(exp=int(time.time()) - 3600)),
        lambda: forge(lease_claims(aud="someone-else")),
        lambda: forge(lease_claims(iss="someone-else")),
        lambda: forge(lease_claims(exp=int(time.time()) + 7200)),  # lifetime > max
        lambda: forge(lease_claims(), headers={"typ": "JWT"}),
        lambda: forge(lease_claims(), headers={"kid": "../../etc/passwd"}),
        lambda: forge(lease_claims(), algorithm="HS512"),
        lambda: "x" * 5000,
        lambda: "not.a.jwt",
    ],
)
def test_forged_lease_tokens_are_refused(make) -> None:
    with pytest.raises(LeaseTokenInvalid):
        tokens().verify(make())


def test_old_lease_keys_still_verify() -> None:
    old = LeaseTokens([KEY], max_ttl_seconds=3600)
    token, _ = old.mint(lease_id="lse_1", project="p", worker_session_id="w")
    rotated = LeaseTokens(
        [LeaseKey(kid="k2", secret=b"new-lease-secret-0123456789-0123456789abcdef"), KEY],
        max_ttl_seconds=3600,
    )
    assert rotated.verify(token).lease_id == "lse_1"
    new_token, _ = rotated.mint(lease_id="lse_2", project="p", worker_session_id="w")
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    with pytest.raises(LeaseTokenInvalid):
        old.verify(new_token)


def _rsa():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": "rsa-1", "alg": "RS256"}


def _ed():
    key = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": "ed-1"}


def principal_claims(**over) -> dict:
    now = int(time.time())
    claims = {
        "sub": "user:alice",
        "scope": "artifacts:read",
        "projects": ["demo"],
        "iss": "mobius",
        "aud": "mobius-artifacts",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def verifier(jwks=()) -> PrincipalVerifier:
    return PrincipalVerifier(
        secret=SECRET,
        jwks=jwks,
        issuer="mobius",
        audience="mobius-artifacts",
        leeway_seconds=5,
        max_ttl_seconds=86400,
    )


def test_principal_tokens_hs_rs_and_eddsa() -> None:
    rsa_key, rsa_jwk = _rsa()
    ed_key, ed_jwk = _ed()
    v = verifier([rsa_jwk, ed_jwk])
    hs = mint_principal_token(
        secret=SECRET,
        sub="agent:bot",
        scopes=["artifacts:read", "artifacts:write"],
        projects=["demo"],
        issuer="mobius",
        audience="mobius-artifacts",
        ttl_seconds=60,
    )
    principal = v.verify(hs)
    assert principal.owner_kind == "agent"
    assert principal.has("artifacts:write") and principal.in_project("demo")
    assert not principal.in_project("other")
    rs = jwt.encode(principal_claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert v.verify(rs).sub == "user:alice"
    ed = jwt.encode(principal_claims(), ed_key, algorithm="EdDSA", headers={"kid": "ed-1"})
    assert v.verify(ed).sub == "user:alice"


def test_forged_principal_tokens_are_refused() -> None:
    rsa_key, rsa_jwk = _rsa()
    v = verifier([rsa_jwk])
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = [
        # HS/RS confusion: HMAC keyed with the RSA public key, under the RSA kid
        _hmac_with(public_pem, principal_claims(), kid="rsa-1"),
        # an RS256 token without a known kid is verified as HS256 only
        jwt.encode(principal_claims(), rsa_key, algorithm="RS256"),
        jwt.encode(
            principal_claims(), b"wrong-secret-0123456789abcdef-0123456789", algorithm="HS256"
        ),
        jwt.encode(principal_claims(aud="other"), SECRET, algorithm="HS256"),
        jwt.encode(principal_claims(iss="other"), SECRET, algorithm="HS256"),
        jwt.encode(principal_claims(exp=int(time.time()) - 100), SECRET, algorithm="HS256"),
        jwt.encode(principal_claims(exp=None), SECRET, algorithm="HS256"),
        jwt.encode(principal_claims(projects="demo"), SECRET, algorithm="HS256"),
        _unsigned(principal_claims()),
    ]
    for token in forged:
        with pytest.raises(ApiError) as info:
            v.verify(token)
        assert info.value.code == "unauthenticated"


def _hmac_with(key: bytes, claims: dict, *, kid: str) -> str:
    """HS256-sign with arbitrary bytes (PyJWT refuses PEM keys as HMAC secrets)."""
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(sig)}"
