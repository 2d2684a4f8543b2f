"""The layout (docs/architecture.md): ``gateway`` composes; ``leases`` and ``storage`` stand alone;
the client ``mobius_artifacts`` (under ``client/``) imports nothing of the server."""

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"leases": {"gateway", "storage"}, "storage": {"gateway", "leases"}}
CLIENT = ROOT / "client" / "mobius_artifacts"
SERVER = {"gateway", "leases", "storage"}
# What the client may import besides the standard library and itself: its dependencies,
# aiohttp (with the two packages aiohttp's own API hands out), tqdm (the command line's
# progress bar) and shtab (its shell completion).
CLIENT_THIRD_PARTY = {"aiohttp", "yarl", "multidict", "tqdm", "shtab"}
# The MCP server alone may import the official SDK (the `mcp` extra) and pydantic, its models.
_MCP_SDK = {
    "mcp",
    "pydantic",
    "pydantic_core",
    "anyio",
    "uvicorn",
}  # the [mcp] extra and what it brings
CLIENT_EXTRAS = {"mcp_server.py": _MCP_SDK, "mcp_transport.py": _MCP_SDK}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_standalone_packages_import_neither_gateway_nor_each_other(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        wrong = imported_packages(path) & FORBIDDEN[package]
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"


def test_client_imports_nothing_of_the_server() -> None:
    paths = sorted(CLIENT.rglob("*.py"))
    assert CLIENT / "client.py" in paths
    allowed = set(sys.stdlib_module_names) | CLIENT_THIRD_PARTY | {"mobius_artifacts"}
    for path in paths:
        imported = imported_packages(path) - CLIENT_EXTRAS.get(path.name, set())
        wrong = imported & SERVER
        assert not wrong, f"{path.relative_to(ROOT)} imports {sorted(wrong)}"
        unknown = imported - allowed
        assert not unknown, f"{path.relative_to(ROOT)} imports {sorted(unknown)}"
    # no relative import reaches out of the package either
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.relative_to(ROOT)}: relative import"


def test_client_distribution_depends_on_aiohttp_tqdm_and_shtab_only() -> None:
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    assert project["name"] == "mobius-artifacts"
    names = [d.split(">")[0].split("<")[0].strip() for d in project["dependencies"]]
    assert names == ["aiohttp", "tqdm", "shtab"]
    # the progress bar's former extra stays, empty, for the commands that name it
    assert project["optional-dependencies"]["progress"] == []
    assert project["scripts"] == {"mobius-artifacts": "mobius_artifacts.cli:main"}
    assert (CLIENT / "py.typed").is_file()
    # the MCP server's SDK is an extra; the root's dev extra installs it for the tests
    assert project["optional-dependencies"]["mcp"] == ["mcp>=2,<3"]
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "mcp>=2,<3" in root["optional-dependencies"]["dev"]
    # the root distribution depends on the client's, which brings its own dependencies
    assert any(d.startswith("mobius-artifacts") for d in root["dependencies"])
    assert not {"tqdm", "shtab"} & {d.split(">")[0] for d in root["dependencies"]}


def test_only_the_mcp_server_imports_the_mcp_sdk() -> None:
    """``import mobius_artifacts`` and every other module (but the MCP server and its
    transport) work without the ``mcp`` extra."""
    for path in sorted(CLIENT.rglob("*.py")):
        if path.name not in CLIENT_EXTRAS:
            assert not imported_packages(path) & {"mcp", "pydantic"}, path


def test_root_distribution_depends_on_the_client_and_checks_it_together() -> None:
    """The server's distribution carries no copy of the client (it depends on
    `mobius-artifacts`, tests/unit/test_packaging.py); the checkout type-checks and
    lints both together."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    find = root["tool"]["setuptools"]["packages"]["find"]
    assert "where" not in find and not [p for p in find["include"] if "mobius" in p]
    assert "mobius-artifacts" not in root["project"]["scripts"]
    assert "mobius_artifacts" in root["tool"]["mypy"]["packages"]
    assert root["tool"]["mypy"]["mypy_path"] == "client"
