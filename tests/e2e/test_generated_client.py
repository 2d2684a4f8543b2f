"""A client generated from /v1/openapi.json by openapi-python-client works against `serve`.

The served document is fed to the generator as a user would; the generated
package (httpx + attrs, synchronous) registers a claim, publishes a file as a
multipart upload with its ``File`` type, and reads the artifact and its bytes back.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import principal_token
from tests.e2e.test_serve import serve

pytestmark = pytest.mark.timeout(180)

PACKAGE = "gateway_generated_client"


def generate(spec: Path, output: Path) -> None:
    config = spec.parent / "generator.json"
    # No formatter hooks: only the generated code's behaviour is under test.
    config.write_text(json.dumps({"package_name_override": PACKAGE, "post_hooks": []}))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "openapi-python-client"),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(output),
            "--meta",
            "none",
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Any]:
    """Import the package generated under ``tmp_path/src``; forget it afterwards."""
    src = tmp_path / "src"
    sys.path.insert(0, str(src))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(src))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_generated_client_publishes_and_reads_back(
    backends, tmp_path: Path, project: str, generated: Any
) -> None:
    with serve(backends, tmp_path) as gw, contextlib.ExitStack() as clients:
        spec = tmp_path / "openapi.json"
        with urllib.request.urlopen(gw.base + "/v1/openapi.json", timeout=10) as resp:
            spec.write_bytes(resp.read())
        generate(spec, tmp_path / "src" / PACKAGE)

        client_mod: ModuleType = generated("client")
        models: ModuleType = generated("models")
        types: ModuleType = generated("types")
        register_claim = generated("api.claims.register_claim")
        publish_artifact = generated("api.artifacts.publish_artifact")
        get_artifact = generated("api.artifacts.get_artifact")
        get_artifact_content = generated("api.content.get_artifact_content")

        def principal(sub: str, scopes: str) -> Any:
            token = principal_token(sub, scopes)
            return clients.enter_context(
                client_mod.AuthenticatedClient(base_url=gw.base, token=token)
            )

        scheduler = principal("svc:scheduler", "claims:write")
        reader = principal("user:reader", "artifacts:read")

        claim = register_claim.sync_detailed(
            project,
            client=scheduler,
            body=models.ClaimRequest(
                run_id="run_gen",
                step_id="build",
                job_id="job_gen",
                attempt=1,
                worker_session_id="ws_gen",
            ),
        )
        assert claim.status_code == 201, claim.content
        # The lease token is an apiKey header: the same client class carries it.
        worker = clients.enter_context(
            client_mod.AuthenticatedClient(
                base_url=gw.base,
                token=claim.parsed.lease_token,
                auth_header_name="X-Mobius-Lease-Token",
                prefix="",
            )
        )

        def publish(data: bytes, name: str, mime: str, **fields: Any) -> Any:
            body = models.PublishArtifactFilesBody(
                file=types.File(payload=io.BytesIO(data), file_name=name, mime_type=mime),
                **fields,
            )
            response = publish_artifact.sync_detailed(
                project, client=worker, body=body, idempotency_key=f"gen-{name}"
            )
            assert response.status_code == 201, response.content
            assert isinstance(response.parsed, models.ArtifactRef)
            return response.parsed

        data = b"# report\n" + bytes(range(256)) * 64
        first = publish(
            data,
            "report.bin",
            "application/octet-stream",
            description="made by a generated client",
            metadata=models.PublishArtifactFilesBodyMetadata.from_dict({"suite": "nightly"}),
        )
        assert first.size == len(data)
        assert first.sha256 == hashlib.sha256(data).hexdigest()
        second = publish(
            b"derived\n", "notes.md", "text/markdown", derived_from=json.dumps([first.id])
        )
        assert second.mime == "text/markdown"
        # the same operation with a JSON body: a small text artifact
        text = publish_artifact.sync_detailed(
            project,
            client=worker,
            body=models.JsonPublish(name="plan.md", content="# plan\n", artifact_type="plan"),
        )
        assert text.status_code == 201, text.content
        assert isinstance(text.parsed, models.ArtifactRef)
        assert text.parsed.size == len(b"# plan\n")

        artifact = get_artifact.sync_detailed(project, first.id, client=reader)
        assert artifact.status_code == 200, artifact.content
        assert isinstance(artifact.parsed, models.Artifact)
        assert artifact.parsed.name == "report.bin"
        assert artifact.parsed.sha256 == first.sha256
        assert artifact.parsed.description == "made by a generated client"
        assert artifact.parsed.metadata.to_dict() == {"suite": "nightly"}
        assert artifact.parsed.lineage.run_id == "run_gen"
        derived = get_artifact.sync(project, second.id, client=reader)
        assert derived.derived_from == [first.id]

        content = get_artifact_content.sync_detailed(project, first.id, client=reader)
        assert content.status_code == 200
        assert isinstance(content.parsed, types.File)
        assert content.parsed.payload.read() == data
