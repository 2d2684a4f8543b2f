"""One version: ``gateway.__version__``, and every place that shows one agrees with it."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from mobius_artifacts.transport import USER_AGENT
from packaging.version import Version

from gateway import __version__, metrics
from gateway.cli import build_parser
from gateway.openapi import document

ROOT = Path(__file__).resolve().parents[2]
IMAGE_TAG = re.compile(r"\bartifact-gateway:(\d[\w.+-]*)")


def test_the_version_is_a_release_version() -> None:
    assert str(Version(__version__)) == __version__


def test_pyproject_takes_the_version_from_the_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "gateway.__version__"}


def test_installed_metadata_agrees() -> None:
    """A mismatch means a stale install: `make` reinstalls when gateway/__init__.py changes."""
    assert importlib.metadata.version("mobius-artifact-gateway") == __version__


def test_cli_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"artifact-gateway {__version__}"


def test_openapi_build_info_and_user_agent_agree() -> None:
    assert document()["info"]["version"] == __version__
    samples = [s for family in metrics.BUILD_INFO.collect() for s in family.samples]
    assert {s.labels["version"] for s in samples} == {__version__}
    assert USER_AGENT.startswith(f"mobius-artifacts/{__version__} ")


def test_the_client_is_released_with_the_server() -> None:
    """The client distribution (client/) writes its version once too, in
    mobius_artifacts/_version.py (it cannot import the server); both ship together,
    so the two agree."""
    from mobius_artifacts import __version__ as client_version

    assert client_version == __version__
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text(encoding="utf-8"))
    assert client["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "mobius_artifacts._version.__version__"
    }


def test_deploy_assets_name_the_image_of_this_version() -> None:
    files = [
        ROOT / "deploy" / "Dockerfile",
        ROOT / "deploy" / "README.md",
        *sorted((ROOT / "deploy").rglob("*.yaml")),
    ]
    tags = [
        (str(path.relative_to(ROOT)), tag)
        for path in files
        for tag in IMAGE_TAG.findall(path.read_text(encoding="utf-8"))
    ]
    assert tags, "no artifact-gateway image tag found in deploy/"
    assert [(path, tag) for path, tag in tags if tag != __version__] == []
    kustomization = (ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text()
    new_tag = re.search(r"^\s*newTag:\s*(\S+)\s*$", kustomization, re.M)
    assert new_tag is not None and new_tag[1] == __version__
