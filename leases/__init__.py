"""Lease tokens and job claims: mint, verify, derive lineage, supersede, release.

Stands alone: it imports neither ``gateway`` nor ``storage``.
"""

from leases.cache import ClaimCache
from leases.claims import (
    CLAIMS_CHANNEL,
    DEFAULT_TTL_SECONDS,
    LINEAGE_FIELDS,
    MAX_ATTEMPT,
    Claim,
    Lineage,
    active_claim,
    get_claim,
    new_lease_id,
    prune_ended_claims,
    register_claim,
    release_claim,
    renew_claim,
)
from leases.errors import (
    ClaimConflict,
    ClaimNotFound,
    LeaseError,
    LeaseInactive,
    LeaseSuperseded,
    LeaseTokenInvalid,
    LeaseWrongProject,
)
from leases.tokens import COMPACT_JWT, LEASE_TOKEN_TYPE, LeaseKey, LeaseTokenClaims, LeaseTokens

__all__ = [
    "CLAIMS_CHANNEL",
    "COMPACT_JWT",
    "DEFAULT_TTL_SECONDS",
    "LEASE_TOKEN_TYPE",
    "LINEAGE_FIELDS",
    "MAX_ATTEMPT",
    "Claim",
    "ClaimCache",
    "ClaimConflict",
    "ClaimNotFound",
    "LeaseError",
    "LeaseInactive",
    "LeaseKey",
    "LeaseSuperseded",
    "LeaseTokenClaims",
    "LeaseTokenInvalid",
    "LeaseTokens",
    "LeaseWrongProject",
    "Lineage",
    "active_claim",
    "get_claim",
    "new_lease_id",
    "prune_ended_claims",
    "register_claim",
    "release_claim",
    "renew_claim",
]
