"""``mobius-artifacts mcp`` driven by the ``mcp`` SDK's own client, over stdio (and once
over streamable HTTP), against a served gateway: the tools and their schemas, a
delivered file found through the HTTP API with its description and lineage, escapes
refused with nothing published, reading back as text, image, blob or link, and the
gateway's refusals as tool errors carrying their code."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp import types as mt

from gateway.devstack import free_port
from tests.conftest import ALL_SCOPES, principal_token
from tests.e2e.test_client_cli import CLIENT, call, cli, environ
from tests.e2e.test_serve import Gateway, serve
from tests.helpers import ADMIN, SCHEDULER

pytestmark = pytest.mark.timeout(120)
TOOLS = {"deliver_file", "publish_text", "list_artifacts", "get_artifact", "read_artifact"}


@pytest.fixture(scope="module")
def gateway(backends: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serve(backends, tmp_path_factory.mktemp("mcp")) as gw:
        yield gw


@pytest.fixture
def project() -> str:
    return "mcp-" + secrets.token_hex(5)


def new_claim(gw: Gateway, project: str, run_id: str = "run_mcp", **over: Any) -> dict[str, Any]:
    body = {
        "run_id": run_id,
        "step_id": "write",
        "job_id": f"job_{time.time_ns()}",
        "attempt": 1,
        "worker_session_id": "ws_agent",
        "session_id": "sess_7",
        **over,
    }
    claim: dict[str, Any] = call(gw, "POST", f"/v1/projects/{project}/claims", body, SCHEDULER)
    return claim | {"body": body}


def reader(project: str) -> str:
    return principal_token("user:ops", ALL_SCOPES, projects=[project])


def get(gw: Gateway, path: str, token: str) -> Any:
    request = urllib.request.Request(gw.base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not for publishing\n")
    return ws


@pytest.fixture
def claim(gateway: Gateway, project: str) -> dict[str, Any]:
    return new_claim(gateway, project)


@pytest.fixture
def env(gateway: Gateway, project: str, claim: dict[str, Any], workspace: Path) -> dict[str, str]:
    """An agent's environment: its job's lease, a read token, its workspace."""
    return {
        "MOBIUS_ARTIFACTS_URL": gateway.base,
        "MOBIUS_LEASE_TOKEN": claim["lease_token"],
        "MOBIUS_ARTIFACTS_TOKEN": reader(project),
        "MOBIUS_WORKSPACE": str(workspace),
    }


@contextlib.asynccontextmanager
async def agent(env: dict[str, str], cwd: Path | None = None) -> AsyncIterator[Client]:
    """The SDK's client on ``mobius-artifacts mcp`` spawned over stdio."""
    params = StdioServerParameters(
        command=CLIENT, args=["mcp"], env=env, cwd=str(cwd) if cwd else None
    )
    async with Client(params) as client:
        yield client


def text_of(result: mt.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, mt.TextContent))


def tool_error(result: mt.CallToolResult, code: str) -> str:
    assert result.is_error, result
    text = text_of(result)
    assert text.startswith(f"{code}: "), text
    return text


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def test_tools_schemas_and_the_resource_template(env: dict[str, str], project: str) -> None:
    async with agent(env) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            assert tool.description and len(tool.description) > 40, tool.name
            for name, schema in tool.input_schema["properties"].items():
                assert schema.get("description"), (tool.name, name)
        deliver = tools["deliver_file"].input_schema
        assert deliver["required"] == ["filePath"]
        assert set(deliver["properties"]) == {
            "filePath",
            "description",
            "name",
            "artifact_type",
            "metadata",
        }
        assert "workspace" in deliver["properties"]["filePath"]["description"]
        publish = tools["publish_text"].input_schema
        assert publish["required"] == ["name", "content"]
        assert set(publish["properties"]) == {
            "name",
            "content",
            "mime",
            "description",
            "artifact_type",
            "metadata",
        }
        listing = tools["list_artifacts"].input_schema
        assert set(listing["properties"]) == {
            "run_id",
            "step_id",
            "session_id",
            "artifact_type",
            "mime_class",
            "name_prefix",
            "limit",
        }
        assert "required" not in listing
        for name in ("get_artifact", "read_artifact"):
            assert tools[name].input_schema["required"] == ["id"]
        out = tools["deliver_file"].output_schema
        assert out is not None
        assert {"id", "sha256", "uri", "download_url"} <= set(out["properties"])
        assert (
            tools["read_artifact"].annotations and tools["read_artifact"].annotations.read_only_hint
        )

        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["artifact://{project}/{id}"]
        assert project in (templates[0].description or "")


async def test_deliver_file_publishes_under_the_lease(
    gateway: Gateway,
    env: dict[str, str],
    project: str,
    claim: dict[str, Any],
    workspace: Path,
) -> None:
    body = b"# Findings\n\nThe cache hit rate doubled.\n"
    (workspace / "out" / "findings.md").write_bytes(body)
    token = env["MOBIUS_ARTIFACTS_TOKEN"]
    # another job of the same run, and a job of another run
    sibling = new_claim(gateway, project)
    other = new_claim(gateway, project, run_id="run_other")
    async with agent(env) as client:
        assert (await client.list_resources()).resources == []
        result = await client.call_tool(
            "deliver_file",
            {
                "filePath": "out/findings.md",
                "description": "What the profiling run found",
                "metadata": {"suite": "perf"},
            },
        )
        assert not result.is_error, text_of(result)
        ref = result.structured_content
        assert isinstance(ref, dict)
        assert (ref["name"], ref["project"], ref["size"]) == ("findings.md", project, len(body))
        assert ref["sha256"] == hashlib.sha256(body).hexdigest()
        assert ref["mime"] == "text/markdown"
        uri = f"artifact://{project}/{ref['id']}"
        assert ref["uri"] == uri
        (link,) = [c for c in result.content if isinstance(c, mt.ResourceLink)]
        assert (str(link.uri), link.name, link.mime_type) == (uri, "findings.md", "text/markdown")
        assert link.description == "What the profiling run found"
        # the signed URL downloads the bytes without a credential
        with urllib.request.urlopen(ref["download_url"], timeout=10) as resp:
            assert resp.read() == body
        assert ref["download_url_expires_at"]

        # through the HTTP API: the description, the metadata and the lease's lineage
        artifact = get(gateway, f"/v1/projects/{project}/artifacts/{ref['id']}", token)
        assert artifact["description"] == "What the profiling run found"
        assert artifact["metadata"] == {"suite": "perf"}
        assert artifact["owner"] == {"kind": "run", "id": "run_mcp"}
        lineage = claim["body"]
        assert artifact["lineage"] == {
            k: lineage[k]
            for k in ("run_id", "step_id", "job_id", "attempt", "worker_session_id", "session_id")
        }
        assert artifact["created_by"] == "ws_agent"

        # an absolute path inside the workspace, and a name of the agent's choosing
        absolute = await client.call_tool(
            "deliver_file",
            {"filePath": str(workspace / "out" / "findings.md"), "name": "copy.md"},
        )
        assert not absolute.is_error, text_of(absolute)

        # resources/list: the run's artifacts, the sibling job's included, not another run's
        for lease, name in ((sibling, "sibling.txt"), (other, "other.txt")):
            published = _publish(gateway, project, lease["lease_token"], name)
            assert published["name"] == name
        listed = {r.name: str(r.uri) for r in (await client.list_resources()).resources}
        assert set(listed) == {"findings.md", "copy.md", "sibling.txt"}
        assert listed["findings.md"] == uri


def _publish(gw: Gateway, project: str, lease_token: str, name: str) -> dict[str, Any]:
    boundary = "mcp-test-boundary"
    payload = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/plain\r\n\r\nhello\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{gw.base}/v1/projects/{project}/artifacts",
        data=payload,
        method="POST",
        headers={
            "X-Mobius-Lease-Token": lease_token,
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        result: dict[str, Any] = json.loads(resp.read())
        return result


async def test_escapes_directories_and_missing_files_publish_nothing(
    gateway: Gateway, env: dict[str, str], project: str, workspace: Path
) -> None:
    outside = workspace.parent / "outside"
    (workspace / "link").symlink_to(outside / "secret.txt")
    (workspace / "dirlink").symlink_to(outside)
    refusals = {
        "../outside/secret.txt": "outside_workspace",
        "out/../../outside/secret.txt": "outside_workspace",
        str(outside / "secret.txt"): "outside_workspace",
        "link": "outside_workspace",
        "dirlink/secret.txt": "outside_workspace",
        "out": "is_a_directory",
        "missing.txt": "file_not_found",
    }
    async with agent(env) as client:
        for path, code in refusals.items():
            result = await client.call_tool("deliver_file", {"filePath": path})
            text = tool_error(result, code)
            assert result.structured_content is None
            if code == "outside_workspace":
                assert str(workspace) in text  # names the workspace it must stay in
        assert (await client.list_resources()).resources == []
    listing = get(gateway, f"/v1/projects/{project}/artifacts", env["MOBIUS_ARTIFACTS_TOKEN"])
    assert listing["items"] == []
    quota = get(gateway, f"/v1/projects/{project}/artifacts/quota", env["MOBIUS_ARTIFACTS_TOKEN"])
    assert quota["used_bytes"] == 0


async def test_read_back_as_text_image_blob_or_link(
    env: dict[str, str], project: str, workspace: Path
) -> None:
    files = {
        "notes.txt": "naïve café — ünïcode\n".encode(),
        "pixel.png": png(),
        "blob.bin": os.urandom(2000),
        "big.txt": b"x" * (1024 * 1024 + 1),
    }
    for name, data in files.items():
        (workspace / name).write_bytes(data)
    async with agent(env) as client:
        ids = {}
        for name in files:
            result = await client.call_tool("deliver_file", {"filePath": name})
            assert not result.is_error, text_of(result)
            assert isinstance(result.structured_content, dict)
            ids[name] = result.structured_content["id"]

        text = await client.call_tool("read_artifact", {"id": ids["notes.txt"]})
        assert not text.is_error and text_of(text) == files["notes.txt"].decode()
        image = await client.call_tool("read_artifact", {"id": ids["pixel.png"]})
        (block,) = image.content
        assert isinstance(block, mt.ImageContent) and block.mime_type == "image/png"
        assert base64.b64decode(block.data) == files["pixel.png"]
        for name in ("blob.bin", "big.txt"):  # not shown: a link and a signed URL
            linked = await client.call_tool("read_artifact", {"id": ids[name]})
            assert not linked.is_error, text_of(linked)
            assert any(isinstance(c, mt.ResourceLink) for c in linked.content)
            assert isinstance(linked.structured_content, dict)
            with urllib.request.urlopen(
                linked.structured_content["download_url"], timeout=10
            ) as resp:
                assert resp.read() == files[name]

        uri = f"artifact://{project}/"
        (contents,) = (await client.read_resource(uri + ids["notes.txt"])).contents
        assert isinstance(contents, mt.TextResourceContents)
        assert (contents.text, contents.mime_type) == (files["notes.txt"].decode(), "text/plain")
        for name, mime in (("pixel.png", "image/png"), ("blob.bin", "application/octet-stream")):
            (contents,) = (await client.read_resource(uri + ids[name])).contents
            assert isinstance(contents, mt.BlobResourceContents)
            assert base64.b64decode(contents.blob) == files[name]
            assert contents.mime_type == mime
        with pytest.raises(MCPError, match="too_large"):
            await client.read_resource(uri + ids["big.txt"])
        with pytest.raises(MCPError, match="not_found"):
            await client.read_resource(uri + "art_01JD3K7Q9ZB4M2X8N6V5T1R0PA")
        with pytest.raises(MCPError, match="project"):
            await client.read_resource(f"artifact://elsewhere/{ids['notes.txt']}")


async def test_publish_text_and_artifact_types(
    gateway: Gateway, env: dict[str, str], project: str, workspace: Path
) -> None:
    text = "# Plan\n\n1. Profile — then fix.\n"
    (workspace / "report.md").write_text("# Report\n")
    token = env["MOBIUS_ARTIFACTS_TOKEN"]
    async with agent(env) as client:
        result = await client.call_tool(
            "publish_text",
            {
                "name": "plan.md",
                "content": text,
                "description": "the plan",
                "artifact_type": "plan",
                "metadata": {"model": "m1"},
            },
        )
        assert not result.is_error, text_of(result)
        ref = result.structured_content
        assert isinstance(ref, dict)
        assert (ref["name"], ref["mime"], ref["size"]) == (
            "plan.md",
            "text/markdown",
            len(text.encode()),
        )
        assert ref["sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert ref["uri"] == f"artifact://{project}/{ref['id']}" and ref["download_url"]
        (link,) = [c for c in result.content if isinstance(c, mt.ResourceLink)]
        assert (link.name, link.description) == ("plan.md", "the plan")

        artifact = get(gateway, f"/v1/projects/{project}/artifacts/{ref['id']}", token)
        assert (artifact["artifact_type"], artifact["description"]) == ("plan", "the plan")
        assert artifact["metadata"] == {"model": "m1"}
        assert artifact["lineage"]["run_id"] == "run_mcp"

        # read back: the tool and resources/read
        assert text_of(await client.call_tool("read_artifact", {"id": ref["id"]})) == text
        (contents,) = (await client.read_resource(ref["uri"])).contents
        assert isinstance(contents, mt.TextResourceContents)
        assert (contents.text, contents.mime_type) == (text, "text/markdown")

        plain = await client.call_tool(
            "publish_text", {"name": "notes.txt", "content": "n", "mime": "text/plain"}
        )
        assert isinstance(plain.structured_content, dict)
        assert plain.structured_content["mime"] == "text/plain"
        report = await client.call_tool(
            "deliver_file", {"filePath": "report.md", "artifact_type": "report"}
        )
        assert isinstance(report.structured_content, dict)
        got = await client.call_tool("get_artifact", {"id": report.structured_content["id"]})
        assert isinstance(got.structured_content, dict)
        assert got.structured_content["artifact_type"] == "report"
        for kind, names in (("plan", ["plan.md"]), ("report", ["report.md"]), ("log", [])):
            listed = await client.call_tool("list_artifacts", {"artifact_type": kind})
            assert isinstance(listed.structured_content, dict)
            assert [i["name"] for i in listed.structured_content["items"]] == names

        # too large for a JSON publish; a label that is not a slug: tool errors
        big = await client.call_tool(
            "publish_text", {"name": "big.md", "content": "x" * (1024 * 1024 + 1)}
        )
        assert "multipart" in tool_error(big, "artifact_too_large")
        bad = await client.call_tool(
            "publish_text", {"name": "b.md", "content": "b", "artifact_type": "Not A Slug"}
        )
        assert bad.is_error and "artifact_type" in text_of(bad)
    listing = get(gateway, f"/v1/projects/{project}/artifacts", token)
    assert sorted(i["name"] for i in listing["items"]) == ["notes.txt", "plan.md", "report.md"]


async def test_get_and_list(env: dict[str, str], project: str, workspace: Path) -> None:
    for name in ("a-1.txt", "a-2.txt", "b.txt"):
        (workspace / name).write_text(name)
    async with agent(env) as client:
        for name in ("a-1.txt", "a-2.txt", "b.txt"):
            assert not (await client.call_tool("deliver_file", {"filePath": name})).is_error
        listed = await client.call_tool("list_artifacts", {"name_prefix": "a-", "limit": 1})
        assert not listed.is_error, text_of(listed)
        assert isinstance(listed.structured_content, dict)
        (item,) = listed.structured_content["items"]
        assert item["name"] == "a-2.txt" and listed.structured_content["has_more"] is True
        everything = await client.call_tool("list_artifacts", {"run_id": "run_mcp"})
        assert isinstance(everything.structured_content, dict)
        names = [i["name"] for i in everything.structured_content["items"]]
        assert names == ["b.txt", "a-2.txt", "a-1.txt"]
        assert everything.structured_content["has_more"] is False
        links = [c for c in everything.content if isinstance(c, mt.ResourceLink)]
        assert [link.name for link in links] == names
        none = await client.call_tool("list_artifacts", {"run_id": "run_nobody"})
        assert none.structured_content == {"items": [], "has_more": False}

        got = await client.call_tool("get_artifact", {"id": item["id"]})
        assert isinstance(got.structured_content, dict)
        assert got.structured_content["name"] == "a-2.txt"
        assert got.structured_content["lineage"]["run_id"] == "run_mcp"
        tool_error(await client.call_tool("get_artifact", {"id": "art_nope"}), "not_found")
        bad = await client.call_tool("list_artifacts", {"limit": 1000})
        assert bad.is_error  # the schema's bounds, checked before the gateway is asked


async def test_gateway_refusals_are_tool_errors_with_their_code(
    gateway: Gateway, env: dict[str, str], project: str, claim: dict[str, Any], workspace: Path
) -> None:
    (workspace / "data.bin").write_bytes(os.urandom(5000))
    call(gateway, "PUT", f"/v1/projects/{project}/quota", {"limit_bytes": 1000}, ADMIN)
    async with agent(env) as client:
        result = await client.call_tool("deliver_file", {"filePath": "data.bin"})
        text = tool_error(result, "quota_exceeded")
        assert "HTTP 413" in text and "request id" in text
        # the server is still there, and nothing was published
        listed = await client.call_tool("list_artifacts", {})
        assert listed.structured_content == {"items": [], "has_more": False}

        call(gateway, "PUT", f"/v1/projects/{project}/quota", {"limit_bytes": 10**9}, ADMIN)
        call(gateway, "DELETE", f"/v1/projects/{project}/claims/{claim['lease_id']}", {}, SCHEDULER)
        tool_error(
            await client.call_tool("deliver_file", {"filePath": "data.bin"}), "lease_inactive"
        )


async def test_without_a_read_token(env: dict[str, str], project: str, workspace: Path) -> None:
    (workspace / "r.txt").write_text("r")
    env = {k: v for k, v in env.items() if k != "MOBIUS_ARTIFACTS_TOKEN"}
    async with agent(env) as client:
        result = await client.call_tool("deliver_file", {"filePath": "r.txt"})
        assert not result.is_error, text_of(result)
        assert isinstance(result.structured_content, dict)
        assert result.structured_content["download_url"] is None
        listed = await client.call_tool("list_artifacts", {})
        assert "MOBIUS_ARTIFACTS_TOKEN" in tool_error(listed, "configuration_error")
        # resources/list: what this server published
        (resource,) = (await client.list_resources()).resources
        assert str(resource.uri) == result.structured_content["uri"]


async def test_working_directory_is_the_default_workspace(
    env: dict[str, str], workspace: Path
) -> None:
    (workspace / "out" / "here.txt").write_text("here")
    env = {k: v for k, v in env.items() if k != "MOBIUS_WORKSPACE"}
    async with agent(env, cwd=workspace / "out") as client:
        assert not (await client.call_tool("deliver_file", {"filePath": "here.txt"})).is_error
        tool_error(
            await client.call_tool("deliver_file", {"filePath": "../out/../r.txt"}),
            "outside_workspace",
        )


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise AssertionError("the MCP server did not listen")


async def test_streamable_http(env: dict[str, str], project: str, workspace: Path) -> None:
    (workspace / "h.txt").write_text("over http")
    port = free_port()
    proc = subprocess.Popen(
        [CLIENT, "mcp", "--http", f"127.0.0.1:{port}"],
        env=environ(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, proc)
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            result = await client.call_tool("deliver_file", {"filePath": "h.txt"})
            assert not result.is_error, text_of(result)
            assert isinstance(result.structured_content, dict)
            read = await client.call_tool("read_artifact", {"id": result.structured_content["id"]})
            assert text_of(read) == "over http"
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stderr:
            proc.stderr.close()


def test_configuration_errors(gateway: Gateway, project: str, tmp_path: Path) -> None:
    base = environ(MOBIUS_ARTIFACTS_URL=gateway.base, MOBIUS_PROJECT=project)
    token = reader(project)
    cases = [
        (environ(), [], "configuration_error: no gateway URL"),
        (base, [], "configuration_error: no credential"),
        (base | {"MOBIUS_WORKSPACE": str(tmp_path / "nope")}, ["--token", token], "workspace"),
        (base, ["--token", token, "--http", "0.0.0.0:8765"], "loopback"),
        (base, ["--token", token, "--http", "8765"], "HOST:PORT"),
    ]
    for env, args, message in cases:
        result = cli("mcp", *args, env=env, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stdout == ""
        assert result.stderr.startswith("mobius-artifacts: configuration_error: ")
        assert message in result.stderr, result.stderr
