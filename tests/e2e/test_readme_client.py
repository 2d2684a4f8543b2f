"""Every snippet of the README's Client section runs as written, in the environment it
names, against a served gateway: its ```python blocks and the ```sh blocks of its
Shell section.

A block names its environment on its first line (``# a worker: MOBIUS_ARTIFACTS_URL,
MOBIUS_LEASE_TOKEN``); it runs with exactly those variables — a lease of a claim for
the worker, a principal token for the reader — so the README cannot promise an
environment that does not suffice. A block marked ``<!-- not run: reason -->`` just
above it is skipped.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import principal_token
from tests.e2e.test_client_cli import call
from tests.e2e.test_serve import Gateway, serve
from tests.helpers import SCHEDULER

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOT_RUN = re.compile(r"<!-- not run: [^>]+ -->\n\Z")
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    lang: str
    code: str
    marked: bool  # ``<!-- not run: … -->`` just above

    @property
    def variables(self) -> list[str]:
        """The environment the block names on its first line."""
        first = self.code.splitlines()[0]
        return re.findall(r"\bMOBIUS_[A-Z_]+\b", first) if first.startswith("#") else []


def _section(text: str, heading: str) -> str:
    """The body of ``heading`` up to the next heading of its level or above (a ``#``
    line inside a fenced block is code, not a heading)."""
    level = len(heading.split(" ", 1)[0])
    lines = text.split("\n")
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            fenced = not fenced
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < hashes <= level and line[hashes : hashes + 1] == " ":
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def _blocks(section: str, lang: str) -> list[Snippet]:
    return [
        Snippet(lang, m.group(2), bool(NOT_RUN.search(section[: m.start()])))
        for m in BLOCK.finditer(section)
        if m.group(1) == lang
    ]


def readme_snippets() -> list[Snippet]:
    """The Client section's python blocks and its Shell section's sh blocks, in order."""
    client = _section((REPO / "README.md").read_text(), "## Client")
    python = _blocks(client, "python")
    shell = _blocks(_section(client, "### Shell"), "sh")
    return [*python, *shell]


def test_the_snippets_are_found_and_each_names_its_environment() -> None:
    snippets = readme_snippets()
    runnable = [s for s in snippets if not s.marked]
    assert len([s for s in runnable if s.lang == "python"]) >= 3
    assert len([s for s in runnable if s.lang == "sh"]) >= 2
    for snippet in runnable:
        assert "MOBIUS_ARTIFACTS_URL" in snippet.variables, snippet.code
        assert {"MOBIUS_LEASE_TOKEN", "MOBIUS_ARTIFACTS_TOKEN"} & set(snippet.variables)


def test_a_marked_block_is_told_apart() -> None:
    section = "a\n\n<!-- not run: illustrative -->\n```python\nx\n```\n\n```python\ny\n```\n"
    assert [(s.code, s.marked) for s in _blocks(section, "python")] == [
        ("x\n", True),
        ("y\n", False),
    ]


@pytest.fixture(scope="module")
def gateway(backends: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with serve(backends, tmp_path_factory.mktemp("readme-client")) as gw:
        yield gw


def _values(gw: Gateway, project: str) -> dict[str, str]:
    """A value for every variable a block may name: a fresh claim's lease for the worker
    (the run of the README's examples), a reader's principal token."""
    claim = {
        "run_id": "run_42",
        "step_id": "build",
        "job_id": f"job_{time.time_ns()}",
        "attempt": 1,
        "worker_session_id": "ws_9",
    }
    lease = call(gw, "POST", f"/v1/projects/{project}/claims", claim, SCHEDULER)
    return {
        "MOBIUS_ARTIFACTS_URL": gw.base,
        "MOBIUS_LEASE_TOKEN": lease["lease_token"],
        "MOBIUS_ARTIFACTS_TOKEN": principal_token("user:reader", "artifacts:read", [project]),
        "MOBIUS_PROJECT": project,
    }


def _run(snippet: Snippet, values: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOBIUS_", "GATEWAY_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mobius-artifacts, as installed
    env |= {name: values[name] for name in snippet.variables}
    command = (
        [sys.executable, "-c", snippet.code]
        if snippet.lang == "python"
        else ["bash", "-euo", "pipefail", "-c", snippet.code]
    )
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_client_snippet_runs_as_written(gateway: Gateway, tmp_path: Path) -> None:
    project = "readme-" + secrets.token_hex(4)
    snippets = [s for s in readme_snippets() if not s.marked]
    for round_ in range(2):  # and again in the same directory, as a rerun would
        values = _values(gateway, project)
        for snippet in snippets:
            result = _run(snippet, values, tmp_path)
            where = f"round {round_}, {snippet.lang} block:\n{snippet.code}"
            assert "Traceback" not in result.stderr, f"{where}\n{result.stderr}"
            assert result.returncode == 0, f"{where}\n{result.stderr}"
            assert result.stderr == "", f"{where}\n{result.stderr}"
    assert (tmp_path / "copy-of-report.md").read_text().startswith("# nightly report")
    assert (tmp_path / "downloads" / "summary.md").read_text() == "loss 0.4"
