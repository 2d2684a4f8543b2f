"""The client's value types read what they know and ignore the rest: a gateway
that adds a field to any shape (an artifact, its owner and lineage, a reference,
a quota, an event) never breaks an older client."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from mobius_artifacts.values import Artifact, ArtifactRef, Event, Quota

ARTIFACT: dict[str, Any] = {
    "id": "art_01JD0000000000000000000000",
    "project": "demo",
    "name": "report.md",
    "mime": "text/markdown",
    "size": 12,
    "sha256": "0" * 64,
    "state": "available",
    "created_at": "2026-01-02T03:04:05Z",
    "deleted_at": None,
    "owner": {"kind": "run", "id": "run_1"},
    "lineage": {
        "run_id": "run_1",
        "step_id": "build",
        "job_id": "job_1",
        "attempt": 1,
        "worker_session_id": "ws_1",
        "session_id": None,
    },
    "created_by": "lease:l1",
    "description": None,
    "metadata": {},
    "derived_from": [],
    "artifact_type": "report",
}
QUOTA = {
    "project": "demo",
    "used_bytes": 1,
    "limit_bytes": 10,
    "artifact_count": 1,
    "limit_artifacts": 5,
}
EVENT = {"seq": 3, "type": "artifact.created", "artifact": ARTIFACT, "at": "2026-01-02T03:04:05Z"}


def _with_unknown_fields(value: Any) -> Any:
    """Every object of ``value``, nested ones included, with a field added (but
    ``metadata``, which is the publisher's own)."""
    if isinstance(value, dict):
        out = {k: v if k == "metadata" else _with_unknown_fields(v) for k, v in value.items()}
        out["added_in_a_later_version"] = {"any": ["shape"]}
        return out
    if isinstance(value, list):
        return [_with_unknown_fields(v) for v in value]
    return value


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (Artifact.from_json, ARTIFACT),
        (lambda d: ArtifactRef.from_json(d, "demo"), ARTIFACT),
        (Quota.from_json, QUOTA),
        (Event.from_json, EVENT),
    ],
    ids=["artifact", "reference", "quota", "event"],
)
def test_every_shape_tolerates_unknown_fields(parse: Any, data: dict[str, Any]) -> None:
    assert parse(_with_unknown_fields(copy.deepcopy(data))) == parse(data)


def test_lineage_with_an_added_field_is_read() -> None:
    data = copy.deepcopy(ARTIFACT)
    data["lineage"]["region"] = "eu"
    artifact = Artifact.from_json(data)
    assert artifact.lineage is not None
    assert (artifact.lineage.run_id, artifact.lineage.session_id) == ("run_1", None)


def test_an_event_whose_payload_was_omitted_is_read() -> None:
    """The gateway sends this for a stored event it cannot serve; it is no crash."""
    event = Event.from_json(
        {
            "seq": 9,
            "type": "artifact.created",
            "artifact": {"type": "artifact", "id": "art_X", "payload_omitted": "unreadable"},
            "at": None,
        }
    )
    assert (event.artifact, event.artifact_id, event.payload_omitted) == (
        None,
        "art_X",
        "unreadable",
    )
    assert Event.from_json(EVENT).artifact_id == ARTIFACT["id"]


def test_a_quota_from_an_older_gateway_has_no_artifact_limit() -> None:
    older = {k: v for k, v in QUOTA.items() if k != "limit_artifacts"}
    assert Quota.from_json(older).limit_artifacts is None
