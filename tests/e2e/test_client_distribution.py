"""``pip install ./client`` into a fresh virtualenv: the light client and nothing of the server.

The venv is made without pip (``--without-pip``) and this interpreter's pip
installs into it (``pip --python``), so that its site-packages holds only what
the client brings. The install resolves like a user's (same pip configuration
and cache); the client is copied first so that the build leaves nothing in the
checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mobius_artifacts
import pytest

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = (
    "asyncpg",
    "botocore",
    "aiobotocore",
    "boto3",
    "cryptography",
    "pyjwt",
    "prometheus-client",
    "structlog",
    "mobius-artifact-gateway",
)
MAX_SITE_PACKAGES = 25 * 1000 * 1000
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted(d.metadata['Name'].lower().replace('_', '-') "
    "for d in m.distributions())))"
)
# Every module of the package imports (but the MCP server and its transport, which
# need the `mcp` extra), and none of the server comes along.
IMPORT_ALL = (
    "import importlib, json, pkgutil, sys, mobius_artifacts as p; "
    "[importlib.import_module(m.name) "
    "for m in pkgutil.walk_packages(p.__path__, 'mobius_artifacts.') "
    "if m.name not in ('mobius_artifacts.__main__', 'mobius_artifacts.mcp_server', "
    "'mobius_artifacts.mcp_transport')]; "
    "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))"
)


def tree_size(root: Path) -> int:
    """Bytes of every regular file under ``root`` (symbolic links not followed)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def run(*args: str | Path, cwd: Path) -> str:
    """Run a command away from the checkout (``python -c`` would import from its folder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_pip_install_client_is_light(tmp_path: Path) -> None:
    source = tmp_path / "client"
    shutil.copytree(REPO / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "--disable-pip-version-check",
        "install",
        "--quiet",
        source,
        cwd=tmp_path,
    )

    installed = set(json.loads(run(python, "-c", LIST_DISTRIBUTIONS, cwd=tmp_path)))
    # the progress bar and shell completion are always there: no extra to know about
    assert {"mobius-artifacts", "aiohttp", "tqdm", "shtab"} <= installed
    assert not installed & set(SERVER_ONLY), sorted(installed & set(SERVER_ONLY))
    assert "mcp" not in installed  # the MCP server is the [mcp] extra

    (site_packages,) = (venv / "lib").glob("python3.*/site-packages")
    size = tree_size(site_packages)
    assert size < MAX_SITE_PACKAGES, f"site-packages holds {size / 1e6:.1f} MB"

    modules = set(json.loads(run(python, "-c", IMPORT_ALL, cwd=tmp_path)))
    assert not modules & {"gateway", "leases", "storage", "mcp"}, sorted(modules)
    version = run(venv / "bin" / "mobius-artifacts", "--version", cwd=tmp_path).strip()
    assert version == f"mobius-artifacts {mobius_artifacts.__version__}"
    # with no gateway to talk to: a configuration error, exit 2
    result = subprocess.run(
        [venv / "bin" / "mobius-artifacts", "quota"],
        env={"PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("mobius-artifacts: configuration_error: no gateway URL")
    # the MCP server without its extra: one line naming the extra, exit 2
    result = subprocess.run(
        [venv / "bin" / "mobius-artifacts", "mcp"],
        env={"PATH": os.environ.get("PATH", "")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("mobius-artifacts: mcp_unavailable: "), result.stderr
    assert "pip install 'mobius-artifacts[mcp]'" in result.stderr
