"""``mobius-artifacts mcp`` driven by the ``mcp`` SDK's own client, over stdio (and once
over streamable HTTP), against a served gateway: the tools and their schemas, a
delivered file found through the HTTP API with its description and lineage, escapes
refused with nothing published, reading back as text, image, blob or link, fetching
into the workspace (verified, never outside it), the tools' titles, annotations and
output schemas, progress of large transfers, and the gateway's refusals as tool
errors carrying their code."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import secrets
import select
import socket
import struct
import subprocess
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp import types as mt
from mcp.client.stdio import stdio_client

from gateway.devstack import free_port
from tests.conftest import ALL_SCOPES, principal_token
from tests.e2e.test_client_cli import CLIENT, call, cli, environ
from tests.e2e.test_serve import Gateway, serve
from tests.helpers import ADMIN, SCHEDULER

pytestmark = pytest.mark.timeout(120)
TOOLS = {
    "deliver_file",
    "publish_text",
    "list_artifacts",
    "get_artifact",
    "read_artifact",
    "fetch_artifact",
}
# (read-only, destructive, idempotent); every tool's world is closed
HINTS = {
    "deliver_file": (False, False, False),
    "publish_text": (False, False, False),
    "list_artifacts": (True, False, True),
    "get_artifact": (True, False, True),
    "read_artifact": (True, False, True),
    "fetch_artifact": (False, True, True),
}


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
        for name in ("get_artifact", "read_artifact", "fetch_artifact"):
            assert tools[name].input_schema["required"] == ["id"]
        fetch = tools["fetch_artifact"].input_schema
        assert set(fetch["properties"]) == {"id", "filePath", "overwrite"}
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
    os.link(outside / "secret.txt", workspace / "hardlink")
    # a name that is not UTF-8: the refusal still reaches the agent, the byte escaped
    (workspace / "odd").symlink_to(os.fsdecode(os.fsencode(outside) + b"/caf\xe9"))
    # inside, but its name is not text: the artifact needs a name of the agent's
    latin1 = os.fsdecode(os.fsencode(workspace) + b"/caf\xe9.txt")
    Path(latin1).write_text("x")
    (workspace / "nice.txt").symlink_to(latin1)
    refusals = {
        "../outside/secret.txt": "outside_workspace",
        "out/../../outside/secret.txt": "outside_workspace",
        str(outside / "secret.txt"): "outside_workspace",
        "link": "outside_workspace",
        "dirlink/secret.txt": "outside_workspace",
        "odd": "outside_workspace",
        "hardlink": "hard_linked",
        "nice.txt": "invalid_name",
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
            if path == "odd":
                assert "caf\\udce9" in text
            if code == "hard_linked":
                assert "copy" in text
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


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        with contextlib.suppress(OSError), socket.create_connection((host, port), 0.5):
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


@contextlib.contextmanager
def http_server(env: dict[str, str], host: str = "127.0.0.1") -> Iterator[int]:
    """``mobius-artifacts mcp --http HOST:PORT`` running; its port."""
    port = free_port()
    proc = subprocess.Popen(
        [CLIENT, "mcp", "--http", f"{host}:{port}"],
        env=environ(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_port(port, proc, host)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)
        if proc.stderr:
            proc.stderr.close()


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


def post(host: str, port: int, body: bytes, **headers: str) -> tuple[int, bytes]:
    """A raw POST /mcp (its Host and Origin as given); the status and the body."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(
            "POST",
            "/mcp",
            body=body,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
                **{k.replace("_", "-"): v for k, v in headers.items()},
            },
        )
        resp = connection.getresponse()
        return resp.status, resp.read()
    finally:
        connection.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
async def test_streamable_http_refuses_other_hosts_and_origins(
    env: dict[str, str], workspace: Path, host: str
) -> None:
    (workspace / "h.txt").write_text("over http")
    body = json.dumps(INITIALIZE).encode()
    with http_server(env, host) as port:
        # a page of another site whose name was rebound to the loopback address
        assert post(host, port, body, Host="evil.example")[0] == 421
        assert post(host, port, body, Host=f"evil.example:{port}")[0] == 421
        origin = {"Host": f"{host}:{port}", "Origin": "http://evil.example"}
        assert post(host, port, body, **origin)[0] == 403
        # the address itself, and a page served from the machine itself
        for origin in (f"http://{host}:{port}", "http://localhost:6274"):
            status, _ = post(host, port, body, Host=f"{host}:{port}", Origin=origin)
            assert status == 200, origin
        assert post(host, port, body, Host=f"localhost:{port}")[0] == 200
        async with Client(f"http://{host}:{port}/mcp") as client:
            result = await client.call_tool("deliver_file", {"filePath": "h.txt"})
            assert not result.is_error, text_of(result)


NESTED = '{"a":[' * 3000 + "1" + "]}" * 3000


def unreadable_calls() -> dict[str, str]:
    """tools/call lines the SDK cannot decode: a lone surrogate, metadata nested 3,000 deep."""

    def call(request_id: str, arguments: str) -> str:
        return (
            f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call",'
            f'"params":{{"name":"publish_text","arguments":{arguments}}}}}'
        )

    return {
        "surrogate": call('"s-1"', '{"name":"a\\ud800.md","content":"x"}'),
        "nested": call("7", '{"name":"n.md","content":"x","metadata":' + NESTED + "}"),
    }


class Lines:
    """JSON-RPC lines to and from a server spawned over stdio."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def send(self, message: str | dict[str, Any]) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 10) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "no answer"
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer


async def test_unreadable_requests_are_answered_over_stdio(env: dict[str, str]) -> None:
    proc = subprocess.Popen(
        [CLIENT, "mcp"],
        env=environ(**env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        lines = Lines(proc)
        lines.send(INITIALIZE)
        assert lines.receive()["id"] == 1
        lines.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        calls = unreadable_calls()
        lines.send(calls["surrogate"])
        answer = lines.receive()
        assert answer["id"] == "s-1" and answer["error"]["code"] == -32700
        assert "surrogate" in answer["error"]["message"]
        lines.send(calls["nested"])
        answer = lines.receive()
        assert answer["id"] == 7 and "nested" in answer["error"]["message"]
        lines.send('{"jsonrpc":"2.0","id":8,"method":42}')  # JSON, not JSON-RPC
        assert lines.receive()["error"]["code"] == -32600
        lines.send("not json at all")
        answer = lines.receive()  # no id to be found: a null one
        assert (answer["id"], answer["error"]["code"]) == (None, -32700)
        # and the server goes on serving
        lines.send(
            {
                "jsonrpc": "2.0",
                "id": 9,
                "method": "tools/call",
                "params": {"name": "publish_text", "arguments": {"name": "ok.md", "content": "ok"}},
            }
        )
        answer = lines.receive(30)
        assert answer["id"] == 9 and answer["result"]["isError"] is False, answer
    finally:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(20)
        if proc.stdout:
            proc.stdout.close()


async def test_unreadable_requests_are_answered_over_http(env: dict[str, str]) -> None:
    with http_server(env) as port:
        for line in unreadable_calls().values():
            started = time.monotonic()
            status, body = post("127.0.0.1", port, line.encode())
            assert time.monotonic() - started < 10
            assert status == 400
            assert json.loads(body)["error"]["code"] == -32700
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            # and the server goes on serving
            result = await client.call_tool("publish_text", {"name": "ok.md", "content": "ok"})
            assert not result.is_error, text_of(result)


async def test_url_credentials_never_reach_the_agent_or_the_logs(
    env: dict[str, str], workspace: Path, tmp_path: Path
) -> None:
    (workspace / "d.txt").write_text("d")
    # nothing listens there: every call fails, naming the gateway it could not reach
    url = f"http://agent:pw-s3cret@127.0.0.1:{free_port()}/?key=q-s3cret"
    env = {k: v for k, v in env.items() if k != "MOBIUS_ARTIFACTS_TOKEN"}
    env |= {"MOBIUS_ARTIFACTS_URL": url}
    stderr = tmp_path / "stderr"
    with stderr.open("w") as errlog:
        params = StdioServerParameters(command=CLIENT, args=["mcp", "--retries", "0"], env=env)
        async with Client(stdio_client(params, errlog=errlog)) as client:
            for name, arguments in (
                ("deliver_file", {"filePath": "d.txt"}),
                ("publish_text", {"name": "p.md", "content": "p"}),
            ):
                text = tool_error(await client.call_tool(name, arguments), "unavailable")
                assert "127.0.0.1" in text and "s3cret" not in text, text
                assert "http://***@127.0.0.1" in text
    assert "s3cret" not in stderr.read_text()
    # the command line's one error line, and the refusal of a URL's credentials with a token
    for args in (["publish", str(workspace / "d.txt"), "--retries", "0"], ["mcp"]):
        result = cli(*args, env=environ(**env, MOBIUS_ARTIFACTS_TOKEN="t"), cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "configuration_error" in result.stderr and "s3cret" not in result.stderr
    result = cli("publish", str(workspace / "d.txt"), "--retries", "0", env=environ(**env))
    assert result.returncode == 5, result.stderr
    assert "unavailable" in result.stderr and "s3cret" not in result.stderr


async def test_titles_annotations_and_typed_outputs(
    env: dict[str, str], project: str, workspace: Path
) -> None:
    (workspace / "typed.txt").write_text("typed")
    async with agent(env) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        for name, (read_only, destructive, idempotent) in HINTS.items():
            tool = tools[name]
            assert tool.title and tool.annotations, name
            hints = tool.annotations
            assert hints.title == tool.title
            assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (
                read_only,
                destructive,
                idempotent,
            ), name
            assert hints.open_world_hint is False
            assert (tool.output_schema is None) == (name == "read_artifact"), name
        schemas = {name: tool.output_schema for name, tool in tools.items()}
        assert {"id", "name", "sha256", "lineage", "owner"} <= set(
            schemas["get_artifact"]["required"]  # type: ignore[index]
        )
        assert {"path", "size", "sha256"} <= set(schemas["fetch_artifact"]["required"])  # type: ignore[index]

        calls: list[tuple[str, dict[str, Any]]] = [
            ("deliver_file", {"filePath": "typed.txt"}),
            ("publish_text", {"name": "typed.md", "content": "# typed"}),
        ]
        results = {}
        for name, arguments in calls:
            results[name] = await client.call_tool(name, arguments)
        artifact_id = results["deliver_file"].structured_content["id"]
        for name, arguments in (
            ("list_artifacts", {}),
            ("get_artifact", {"id": artifact_id}),
            ("fetch_artifact", {"id": artifact_id, "filePath": "fetched/typed.txt"}),
        ):
            results[name] = await client.call_tool(name, arguments)
        for name, result in results.items():
            assert not result.is_error, text_of(result)
            assert isinstance(result.structured_content, dict), name
            jsonschema.validate(result.structured_content, schemas[name])
        listed = results["list_artifacts"].structured_content
        assert [i["name"] for i in listed["items"]] == ["typed.md", "typed.txt"]
        got = results["get_artifact"].structured_content
        assert got["lineage"]["run_id"] == "run_mcp" and got["state"] == "available"


async def _with_progress(
    client: Client, name: str, arguments: dict[str, Any], size: int
) -> dict[str, Any]:
    """Call ``name`` with a progress callback; check the notifications; the result."""
    reports: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, total, message))

    started = time.monotonic()
    result = await client.call_tool(name, arguments, progress_callback=on_progress)
    elapsed = time.monotonic() - started
    assert not result.is_error, text_of(result)
    assert isinstance(result.structured_content, dict)
    done = [r[0] for r in reports]
    assert len(done) >= 2, (name, reports)
    assert done == sorted(set(done)), reports  # always increasing
    assert done[-1] == size and {r[1] for r in reports} == {size}
    assert all(r[2] and "bytes" in r[2] for r in reports)
    # rate-limited: one per MiB moved or per quarter second, at most
    assert len(done) <= size // (1024 * 1024) + 2 + elapsed / 0.25, (len(done), elapsed)
    return result.structured_content


async def test_large_transfers_report_progress(env: dict[str, str], workspace: Path) -> None:
    size = 5 * 1024 * 1024 + 123
    body = os.urandom(size)
    (workspace / "big.bin").write_bytes(body)
    async with agent(env) as client:
        ref = await _with_progress(client, "deliver_file", {"filePath": "big.bin"}, size)
        arguments = {"id": ref["id"], "filePath": "copy.bin"}
        fetched = await _with_progress(client, "fetch_artifact", arguments, size)
        assert fetched["path"] == str(workspace / "copy.bin")
        assert (workspace / "copy.bin").read_bytes() == body
        # without a progressToken: no notifications, same result
        plain = await client.call_tool("deliver_file", {"filePath": "big.bin", "name": "b2.bin"})
        assert not plain.is_error, text_of(plain)


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


async def test_fetch_artifact_writes_into_the_workspace_verified(
    env: dict[str, str], workspace: Path
) -> None:
    body = os.urandom(300_000)
    (workspace / "data.bin").write_bytes(body)
    outside = workspace.parent / "outside"
    (workspace / "dirlink").symlink_to(outside)
    (workspace / "filelink").symlink_to(outside / "secret.txt")
    async with agent(env) as client:
        ref = (await client.call_tool("deliver_file", {"filePath": "data.bin"})).structured_content
        assert isinstance(ref, dict)
        (workspace / "data.bin").unlink()
        sha = hashlib.sha256(body).hexdigest()

        async def fetch(**arguments: Any) -> mt.CallToolResult:
            return await client.call_tool("fetch_artifact", {"id": ref["id"], **arguments})

        # the artifact's name in the workspace by default; a directory receives it too
        for arguments, where in (
            ({}, workspace / "data.bin"),
            ({"filePath": "out"}, workspace / "out" / "data.bin"),
            ({"filePath": "new/deeper/d.bin"}, workspace / "new" / "deeper" / "d.bin"),
            ({"filePath": str(workspace / "abs.bin")}, workspace / "abs.bin"),
        ):
            result = await fetch(**arguments)
            assert not result.is_error, text_of(result)
            assert result.structured_content == {
                "path": str(where),
                "size": len(body),
                "sha256": sha,
                "id": ref["id"],
                "name": "data.bin",
                "mime": "application/octet-stream",
            }
            assert where.read_bytes() == body
        # an existing file is kept, unless overwrite
        (workspace / "keep.bin").write_bytes(b"mine")
        assert "overwrite" in tool_error(await fetch(filePath="keep.bin"), "file_exists")
        assert (workspace / "keep.bin").read_bytes() == b"mine"
        assert not (await fetch(filePath="keep.bin", overwrite=True)).is_error
        assert (workspace / "keep.bin").read_bytes() == body
        tool_error(await fetch(filePath="."), "file_exists")  # ./data.bin is there

        before = _tree(workspace)
        for path in (
            "../x.bin",
            "out/../../x.bin",
            str(outside / "x.bin"),
            "/tmp/x.bin",
            "dirlink/x.bin",
            "dirlink",
            "filelink",
        ):
            result = await fetch(filePath=path, overwrite=True)
            assert result.structured_content is None
            assert str(workspace) in tool_error(result, "outside_workspace"), path
        assert _tree(outside) == ["secret.txt"]
        assert (outside / "secret.txt").read_text() == "not for publishing\n"
        assert not Path("/tmp/x.bin").exists() and not (workspace.parent / "x.bin").exists()
        tool_error(
            await client.call_tool("fetch_artifact", {"id": "art_01JD3K7Q9ZB4M2X8N6V5T1R0PA"}),
            "not_found",
        )
        assert _tree(workspace) == before  # and no temporary file is left behind
        assert not [p for p in before if p.endswith(".part")]
