"""The shapes of ids in paths and bodies: projects, artifacts, leases.

Each is matched whole, with ``fullmatch`` (``^…$`` would also accept a value
with a trailing newline, ``"demo\\n"``); the patterns carry no anchors.
"""

from __future__ import annotations

import re

PROJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ARTIFACT_ID = re.compile(r"art_[0-9A-HJKMNP-TV-Z]{26}")
# Lease ids are ``lse_`` + a ULID when the gateway mints them; a scheduler's own
# ids are printable ASCII without spaces. Anything else cannot name a claim.
LEASE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# An artifact's optional label: report, plan, dataset, log …
ARTIFACT_TYPE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
