"""The two distributions, the lock the image installs from, the image's build
context (.dockerignore) and the Makefile's installs.

- ``requirements.lock`` pins every runtime dependency of both distributions,
  direct and transitive, with hashes (the image installs it with
  ``pip install --require-hashes``, which refuses anything it does not pin);
- one distribution owns each package: ``mobius_artifacts`` is the client's, and
  the server depends on the client of its own release;
- ``.dockerignore`` keeps local state, secrets, caches and tests out of the build
  context and lets in everything the Dockerfile copies;
- ``make run`` installs what running needs, the other targets the dev extra.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import trove_classifiers
from mobius_artifacts import __version__ as client_version
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
PROJECT_DISTRIBUTIONS = {"mobius-artifact-gateway", "mobius-artifacts"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(?:\s*;\s*(.+?))?\s*\\?$")
HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}\s*\\?$")


def pyproject(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


SERVER = pyproject(ROOT / "pyproject.toml")
CLIENT = pyproject(ROOT / "client" / "pyproject.toml")


# ---------------------------------------------------------------- the lock


def locked() -> dict[str, list[tuple[Version, str | None, int]]]:
    """name -> [(version, marker, number of hashes)]: a name appears once per fork
    of the universal resolution (e.g. one release for Python < 3.12, one above)."""
    pins: dict[str, list[tuple[Version, str | None, int]]] = {}
    current: tuple[str, Version, str | None] | None = None
    hashes = 0

    def close() -> None:
        if current is not None:
            name, version, marker = current
            pins.setdefault(name, []).append((version, marker, hashes))

    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if HASH.match(line):
            hashes += 1
            continue
        match = PIN.match(line)
        assert match, f"requirements.lock: not a pinned requirement: {line!r}"
        close()
        current = (canonicalize_name(match[1]), Version(match[2]), match[3])
        hashes = 0
    close()
    return pins


def runtime_requirements() -> list[Requirement]:
    """Both distributions' [project.dependencies], with the client extras the server asks for."""
    server = [Requirement(r) for r in SERVER["project"]["dependencies"]]
    client = [Requirement(r) for r in CLIENT["project"]["dependencies"]]
    extras = {
        e for r in server if canonicalize_name(r.name) == "mobius-artifacts" for e in r.extras
    }
    for extra in sorted(extras):
        client += [Requirement(r) for r in CLIENT["project"]["optional-dependencies"][extra]]
    return server + client


def test_every_pin_has_a_version_and_hashes() -> None:
    pins = locked()
    assert len(pins) >= 20
    for name, forks in pins.items():
        for version, _, hashes in forks:
            assert hashes >= 1, f"{name}=={version} has no hash"


def test_the_lock_holds_no_distribution_of_the_project() -> None:
    """Those two are built from the tree (wheels in the image, editable in dev)."""
    assert not PROJECT_DISTRIBUTIONS & set(locked())


def test_the_lock_pins_every_direct_runtime_dependency_within_its_range() -> None:
    pins = locked()
    requirements = [
        r for r in runtime_requirements() if canonicalize_name(r.name) not in PROJECT_DISTRIBUTIONS
    ]
    assert {canonicalize_name(r.name) for r in requirements} >= {"aiohttp", "asyncpg", "tqdm"}
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in requirements.lock: run `make lock`"
        for version, _, _ in pins[name]:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"requirements.lock pins {name}=={version}, outside {requirement}: run `make lock`"
            )


def test_the_lock_is_closed_under_what_the_installed_dependencies_require() -> None:
    """Walk the installed metadata from the two distributions (markers evaluated for
    this interpreter): every distribution reached is pinned. pip's hash-checking
    mode fails on any that is not, so the image would not build."""
    pins = locked()
    environment: dict[str, str] = dict(default_environment())
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [
        ("mobius-artifact-gateway", frozenset()),
        ("mobius-artifacts", frozenset({"progress"})),
    ]
    while todo:
        name, extras = todo.pop()
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        if name not in PROJECT_DISTRIBUTIONS:
            assert name in pins, f"{name} is required at run time but not locked: run `make lock`"
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({**environment, "extra": extra})
                for extra in (extras or {""})
            ):
                continue
            todo.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    assert len(seen) >= 20


def test_make_lock_is_how_the_lock_is_made() -> None:
    assert "#    make lock\n" in LOCK.read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^lock:", makefile, re.M)
    recipe = makefile[makefile.index("\nlock:") :].split("\n\n")[0]
    for flag in ("--universal", "--generate-hashes", "--python-version 3.11"):
        assert flag in recipe
    assert SERVER["project"]["requires-python"] == ">=3.11"


# ---------------------------------------------------------------- the distributions


def test_the_server_depends_on_the_client_of_its_release_and_carries_none_of_it() -> None:
    (client,) = [
        Requirement(r)
        for r in SERVER["project"]["dependencies"]
        if canonicalize_name(Requirement(r).name) == "mobius-artifacts"
    ]
    assert str(client.specifier) == f"=={client_version}"
    assert "progress" in client.extras
    find = SERVER["tool"]["setuptools"]["packages"]["find"]
    assert "where" not in find  # the root only: client/ is the client distribution's
    assert not [p for p in find["include"] if p.startswith("mobius_artifacts")]
    assert "mobius_artifacts" not in SERVER["tool"]["setuptools"]["package-data"]
    assert set(SERVER["project"]["scripts"]) == {"artifact-gateway"}
    assert set(CLIENT["project"]["scripts"]) == {"mobius-artifacts"}


def test_the_installed_client_comes_from_the_client_distribution() -> None:
    files = importlib.metadata.files("mobius-artifact-gateway") or []
    assert not [f for f in files if f.parts and f.parts[0] == "mobius_artifacts"]
    requires = importlib.metadata.requires("mobius-artifact-gateway") or []
    assert f"mobius-artifacts[progress]=={client_version}" in requires
    assert importlib.metadata.version("mobius-artifacts") == client_version


def test_the_names_are_the_projects_own() -> None:
    """`artifact-gateway` on PyPI is an unrelated project: the server's distribution
    is `mobius-artifact-gateway`; the command keeps the short name."""
    assert SERVER["project"]["name"] == "mobius-artifact-gateway"
    assert CLIENT["project"]["name"] == "mobius-artifacts"
    assert SERVER["project"]["scripts"]["artifact-gateway"] == "gateway.cli:main"


@pytest.mark.parametrize("project", [SERVER, CLIENT], ids=["server", "client"])
def test_classifiers_license_and_no_invented_urls(project: dict[str, Any]) -> None:
    metadata = project["project"]
    classifiers = metadata["classifiers"]
    assert classifiers == sorted(classifiers)
    assert not [c for c in classifiers if c not in trove_classifiers.classifiers]
    assert not [c for c in classifiers if c.startswith("License ::")]  # the SPDX expression
    python = SERVER["project"]["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {python}" in classifiers
    assert metadata["license"] == "Apache-2.0"
    assert metadata["license-files"] == ["LICENSE"]
    # the project names no homepage or repository of its own yet
    assert "urls" not in metadata


def test_the_clients_license_is_the_repositorys() -> None:
    assert (ROOT / "client" / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()


# ---------------------------------------------------------------- .dockerignore


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per line, matched the way Docker's pattern matcher does:
    ``*`` and ``?`` stop at ``/``, ``**`` crosses it, and a pattern that matches a
    parent directory matches everything below it; the last match wins."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        out.append((negated, re.compile(regex)))
    return out


PATTERNS = dockerignore_patterns()


def excluded(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, regex in PATTERNS:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            result = not negated
    return result


STAYS_OUT = [
    ".git/HEAD",
    ".git/objects/pack/pack-1.pack",
    ".venv/bin/python",
    ".venv/lib/python3.12/site-packages/aiohttp/__init__.py",
    ".gateway-data/secrets.json",
    ".gateway-data/postgres/PG_VERSION",
    "deploy/.env",
    "deploy/Dockerfile",
    ".env",
    ".pytest_cache/v/cache/lastfailed",
    ".mypy_cache/3.12/gateway/app.data.json",
    ".ruff_cache/CACHEDIR.TAG",
    ".hypothesis/examples/x",
    ".schemathesis/report.json",
    "gateway/__pycache__/app.cpython-312.pyc",
    "gateway/api/__pycache__/routes.cpython-311.pyc",
    "client/mobius_artifacts/__pycache__/cli.cpython-312.pyc",
    "storage/s3.pyc",
    "mobius_artifact_gateway.egg-info/PKG-INFO",
    "client/mobius_artifacts.egg-info/PKG-INFO",
    "client/build/lib/mobius_artifacts/cli.py",
    "build/lib/gateway/app.py",
    "dist/mobius_artifact_gateway-0.1.0-py3-none-any.whl",
    "gateway/.env",
    "tests/conftest.py",
    "loadtests/run.py",
    "docs/api.md",
    "CHANGELOG.md",
]


@pytest.mark.parametrize("path", STAYS_OUT)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded(path)


def test_dockerignore_keeps_out_what_is_on_disk_here() -> None:
    """The real local state of this checkout (when there is any) stays out too."""
    for top in (".venv", ".gateway-data", ".git", ".pytest_cache", ".mypy_cache"):
        root = ROOT / top
        if root.is_dir():
            sample = [p for p, _ in zip(root.rglob("*"), range(200), strict=False) if p.is_file()]
            for path in sample:
                assert excluded(path.relative_to(ROOT).as_posix()), path


def copied_sources() -> list[str]:
    text = re.sub(r"\\\n", " ", (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8"))
    sources: list[str] = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY" and not any(w.startswith("--") for w in words):
            sources += words[1:-1]
    return sources


def test_dockerignore_lets_in_every_file_the_dockerfile_copies() -> None:
    sources = copied_sources()
    assert {"pyproject.toml", "requirements.lock", "client/pyproject.toml", "gateway"} <= set(
        sources
    )
    checked = 0
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in files:
            relative = file.relative_to(ROOT).as_posix()
            if not file.is_file() or "__pycache__" in relative or ".egg-info" in relative:
                continue
            assert not excluded(relative), f"{relative} is copied but .dockerignore drops it"
            checked += 1
    assert checked >= 100


# ---------------------------------------------------------------- the Makefile


def dry_run(target: str, tmp_path: Path) -> str:
    """The commands ``make TARGET`` runs on a machine with no virtualenv yet."""
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={tmp_path / 'venv'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_installs_only_what_running_needs(tmp_path: Path) -> None:
    commands = dry_run("run", tmp_path)
    assert "-m venv" in commands
    assert "--require-hashes -r requirements.lock" in commands
    assert "-e ./client -e '.[embedded]'" in commands
    assert "[dev]" not in commands and "playwright" not in commands
    assert "artifact-gateway dev --demo" in commands


@pytest.mark.parametrize("target", ["test", "lint"])
def test_make_test_and_lint_add_the_dev_extra(target: str, tmp_path: Path) -> None:
    commands = dry_run(target, tmp_path).splitlines()
    lock = next(i for i, c in enumerate(commands) if "--require-hashes" in c)
    dev = next(i for i, c in enumerate(commands) if "-e ./client -e '.[dev]'" in c)
    assert lock < dev  # the locked runtime first, the dev tools on top
