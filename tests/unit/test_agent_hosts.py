"""The README's "For agents" section: each MCP host's entry in that host's own format
(Claude Desktop and Cursor ``mcpServers``, VS Code ``servers`` with a ``type``, Claude
Code's ``claude mcp add NAME --env KEY=VALUE -- COMMAND ARGS``), all naming the same
command and environment; and its tool table lists exactly the server's tools."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from mcp import Client
from mobius_artifacts.mcp_server import agent_from, build

README = Path(__file__).resolve().parents[2] / "README.md"
ENV = {"MOBIUS_ARTIFACTS_URL", "MOBIUS_LEASE_TOKEN", "MOBIUS_ARTIFACTS_TOKEN", "MOBIUS_WORKSPACE"}
COMMAND = "/opt/agent/venv/bin/mobius-artifacts"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### For agents\n")
    end = text.index("\n## ", start)
    return text[start:end]


def blocks() -> list[tuple[str, str, str]]:
    """Each fenced block of the section: (language, the paragraph before it, body)."""
    found: list[tuple[str, str, str]] = []
    paragraph: list[str] = []
    ended = False  # a blank line ended the paragraph: the next line starts another
    lines = iter(section().splitlines())
    for line in lines:
        if line.startswith("```"):
            body = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                body.append(inner)
            found.append((line[3:], "\n".join(paragraph), "\n".join(body) + "\n"))
            paragraph, ended = [], False
        elif line.strip():
            if ended:
                paragraph, ended = [], False
            paragraph.append(line)
        else:
            ended = True
    return found


def json_entries(key: str) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    for language, before, body in blocks():
        if language != "json":
            continue
        config = json.loads(body)
        if key in config:
            assert set(config) == {key}, config  # no other host's key beside it
            entries.append((before, config[key]))
    return entries


def test_claude_desktop_and_cursor_read_mcp_servers() -> None:
    ((before, servers),) = json_entries("mcpServers")
    assert "Claude Desktop" in before and "claude_desktop_config.json" in before
    assert "Cursor" in before and ".cursor/mcp.json" in before
    entry = servers["mobius-artifacts"]
    assert set(entry) == {"command", "args", "env"}
    assert (entry["command"], entry["args"]) == (COMMAND, ["mcp"])
    assert set(entry["env"]) == ENV and all(isinstance(v, str) for v in entry["env"].values())


def test_vs_code_reads_servers_with_their_type() -> None:
    ((before, servers),) = json_entries("servers")
    assert "VS Code" in before and ".vscode/mcp.json" in before
    entry = servers["mobius-artifacts"]
    assert set(entry) == {"type", "command", "args", "env"}
    assert entry["type"] == "stdio"
    assert (entry["command"], entry["args"]) == (COMMAND, ["mcp"])
    assert set(entry["env"]) == ENV


def test_claude_code_adds_it_with_its_command_line() -> None:
    (before, body), *others = [(b, body) for lang, b, body in blocks() if lang == "sh"]
    assert not others and "Claude Code" in before
    argv = shlex.split(body.replace("\\\n", " "))
    assert argv[:3] == ["claude", "mcp", "add"]
    # the name first: --env takes several values, and would swallow a name after it
    assert argv[3] == "mobius-artifacts"
    separator = argv.index("--")
    assert argv[separator + 1 :] == [COMMAND, "mcp"]
    options = argv[4:separator]
    assert options[::2] == ["--env"] * len(ENV)
    env = dict(value.split("=", 1) for value in options[1::2])
    assert set(env) == ENV and all(env.values())
    (_, servers), *_ = json_entries("mcpServers")
    assert env == servers["mobius-artifacts"]["env"]  # the same values as the JSON entries


def test_every_host_gets_the_same_environment() -> None:
    ((_, desktop),) = json_entries("mcpServers")
    ((_, vscode),) = json_entries("servers")
    assert desktop["mobius-artifacts"]["env"] == vscode["mobius-artifacts"]["env"]


async def test_the_tool_table_lists_the_servers_tools(tmp_path: Path) -> None:
    agent = agent_from(
        url="http://127.0.0.1:9",
        token="t",
        lease_token=None,
        project="p",
        retries=0,
        ca_bundle=None,
        workspace=str(tmp_path),
    )
    try:
        async with Client(build(agent)) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    finally:
        await agent.client.close()
    rows = re.findall(r"^\| `(\w+)\(([^)]*)\)` \|", section(), re.M)
    assert [name for name, _ in rows] == list(tools)
    for name, params in rows:
        documented = {p.strip().rstrip("?") for p in params.split(",") if p.strip()}
        assert documented == set(tools[name].input_schema["properties"]), name
        required = {p.strip() for p in params.split(",") if p.strip() and "?" not in p}
        assert required == set(tools[name].input_schema.get("required", [])), name
