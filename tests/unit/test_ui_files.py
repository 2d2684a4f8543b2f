"""The artifact browser's files: shipped in the distribution, every reference resolvable,
no HTML strings built from data, the vendored libraries as recorded."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path

from gateway.api import ui

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "gateway" / "ui"


def test_every_file_of_the_browser_is_package_data() -> None:
    """A non-editable install (a wheel) ships every file under gateway/ui."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["gateway"]
    shipped = {path for pattern in patterns for path in (ROOT / "gateway").glob(pattern)}
    files = [path for path in UI.rglob("*") if path.is_file()]
    assert files
    missing = [str(path.relative_to(ROOT)) for path in files if path not in shipped]
    assert missing == []


def test_every_url_the_page_loads_is_served() -> None:
    served = ui.files()
    assert "index.html" in served
    referenced = set(re.findall(r'"/ui/([^"#?]+)"', (UI / "index.html").read_text()))
    for module in (UI / "assets").glob("*.js"):
        text = module.read_text()
        for relative in re.findall(r"from '\./([\w.-]+\.js)'", text):
            referenced.add(f"assets/{relative}")
        for relative in re.findall(r"import\(`\$\{VENDOR\}/([^`]+)`\)", text):
            referenced.add(f"vendor/{relative}")
    assert {"assets/app.js", "assets/app.css", "vendor/marked-18.2.1/marked.esm.js"} <= referenced
    assert sorted(referenced - set(served)) == []


def test_no_module_writes_html_strings_into_the_page() -> None:
    """Text reaches the DOM as text: no innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval in the browser's own code (the sanitiser returns nodes)."""
    for module in (UI / "assets").glob("*.js"):
        text = module.read_text()
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in text, f"{module.name} uses {sink}"
        assert "new Function" not in text


def test_vendored_files_are_the_recorded_ones() -> None:
    readme = (UI / "vendor" / "README.md").read_text()
    recorded = dict(
        (name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)
    )
    vendored = {
        path.relative_to(UI / "vendor").as_posix()
        for path in (UI / "vendor").glob("*/*")
        if path.name != "LICENSE"
    }
    assert set(recorded) == vendored
    for name, digest in recorded.items():
        assert hashlib.sha256((UI / "vendor" / name).read_bytes()).hexdigest() == digest, name
    for folder in (UI / "vendor").iterdir():
        if folder.is_dir():
            assert (folder / "LICENSE").is_file(), folder.name
            assert re.fullmatch(r"[a-z0-9.-]+-\d+\.\d+\.\d+", folder.name)
