"""Errors of the lease domain; the gateway maps each to its problem+json code."""

from __future__ import annotations


class LeaseError(Exception):
    """Base of every lease and claim error."""


class LeaseTokenInvalid(LeaseError):
    """The lease token does not verify (signature, typ, kid, exp, aud, iss, lifetime)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"lease token rejected: {reason}")
        self.reason = reason


class LeaseInactive(LeaseError):
    """The token verifies but its claim is released, expired or unknown."""

    def __init__(self, lease_id: str, reason: str) -> None:
        super().__init__(f"lease {lease_id} is not active: {reason}")
        self.lease_id = lease_id
        self.reason = reason


class LeaseSuperseded(LeaseError):
    """A newer attempt of the same job holds the active claim."""

    def __init__(self, lease_id: str, superseded_by: str | None) -> None:
        super().__init__(f"lease {lease_id} was superseded by a newer attempt")
        self.lease_id = lease_id
        self.superseded_by = superseded_by


class LeaseWrongProject(LeaseError):
    """The lease belongs to another project than the one addressed."""

    def __init__(self, lease_id: str, project: str) -> None:
        super().__init__(f"lease {lease_id} does not belong to project {project}")
        self.lease_id = lease_id
        self.project = project


class ClaimNotFound(LeaseError):
    def __init__(self, lease_id: str) -> None:
        super().__init__(f"no claim {lease_id} in this project")
        self.lease_id = lease_id


class ClaimConflict(LeaseError):
    """An attempt at least as new as the one being registered already exists."""

    def __init__(self, job: str, attempt: int, existing_attempt: int) -> None:
        super().__init__(
            f"job {job} already has attempt {existing_attempt}; "
            f"attempt {attempt} cannot be registered"
        )
        self.attempt = attempt
        self.existing_attempt = existing_attempt
