"""schemathesis against /v1/openapi.json: no 5xx, and every response fits the document."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ALL_SCOPES, principal_token
from tests.e2e.test_serve import serve

pytestmark = pytest.mark.timeout(300)


def test_no_server_errors_and_schema_conformance(backends, tmp_path: Path) -> None:
    token = principal_token("user:fuzzer", ALL_SCOPES, projects=["*"])
    with serve(backends, tmp_path) as gw:
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "st"),
                "run",
                f"{gw.base}/v1/openapi.json",
                "--checks",
                "not_a_server_error,response_schema_conformance,"
                "status_code_conformance,content_type_conformance",
                "--header",
                f"Authorization: Bearer {token}",
                "--max-examples",
                "25",
                "--seed",
                "1",
                "--workers",
                "2",
                "--request-timeout",
                "20",
                "--suppress-health-check",
                "all",
                # The coverage phase trips an internal AST recursion error of this Python
                # (3.11.7) inside the tool itself; fuzzing and stateful runs cover the API.
                "--phases",
                "examples,fuzzing,stateful",
                "--exclude-path-regex",
                "/events$",  # an endless stream when asked for SSE
            ],
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
