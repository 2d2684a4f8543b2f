"""``mobius_artifacts.workspace``: which paths an agent may deliver (the MCP server's
``deliver_file``), symbolic links resolved."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mobius_artifacts import ConfigurationError
from mobius_artifacts.workspace import Workspace, WorkspaceError


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace ``ws`` beside ``outside`` and ``ws-2`` (a name that shares its prefix)."""
    ws, outside, sibling = tmp_path / "ws", tmp_path / "outside", tmp_path / "ws-2"
    for d in (ws / "sub", outside, sibling):
        d.mkdir(parents=True)
    (ws / "report.md").write_text("# report\n")
    (ws / "sub" / "data.csv").write_text("a,b\n")
    (outside / "secret.txt").write_text("secret\n")
    (sibling / "x.txt").write_text("x\n")
    (ws / "escape").symlink_to(outside / "secret.txt")
    (ws / "escape-dir").symlink_to(outside)
    (ws / "inner").symlink_to(ws / "sub" / "data.csv")
    return Workspace.at(ws), tmp_path


def refused(ws: Workspace, path: str) -> str:
    with pytest.raises(WorkspaceError) as info:
        ws.open(path)
    return info.value.code


def test_files_inside_open_relative_or_absolute(tree: tuple[Workspace, Path]) -> None:
    ws, _ = tree
    for path in ("report.md", "./sub/../report.md", str(ws.root / "report.md")):
        resolved, fh = ws.open(path)
        with fh:
            assert resolved == ws.root / "report.md"
            assert fh.read() == b"# report\n"
    resolved, fh = ws.open("inner")  # a link that stays inside is followed
    fh.close()
    assert resolved == ws.root / "sub" / "data.csv"


def test_escapes_are_refused(tree: tuple[Workspace, Path]) -> None:
    ws, tmp = tree
    assert refused(ws, "../outside/secret.txt") == "outside_workspace"
    assert refused(ws, "sub/../../outside/secret.txt") == "outside_workspace"
    assert refused(ws, str(tmp / "outside" / "secret.txt")) == "outside_workspace"
    assert refused(ws, "../ws-2/x.txt") == "outside_workspace"
    assert refused(ws, "escape") == "outside_workspace"  # a symbolic link out
    assert refused(ws, "escape-dir/secret.txt") == "outside_workspace"
    assert refused(ws, "../outside/missing.txt") == "outside_workspace"
    assert refused(ws, "/etc/passwd") == "outside_workspace"


def test_directories_missing_files_and_odd_paths_are_refused(
    tree: tuple[Workspace, Path],
) -> None:
    ws, _ = tree
    assert refused(ws, "sub") == "is_a_directory"
    assert refused(ws, ".") == "is_a_directory"
    assert refused(ws, "missing.txt") == "file_not_found"
    assert refused(ws, "") == "invalid_path"
    assert refused(ws, "a\0b") == "invalid_path"
    os.mkfifo(ws.root / "pipe")
    assert refused(ws, "pipe") == "not_a_file"
    (ws.root / "loop").symlink_to(ws.root / "loop")
    assert refused(ws, "loop") in ("invalid_path", "file_not_found", "os_error")


def test_the_workspace_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        Workspace.at(tmp_path / "missing")
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigurationError):
        Workspace.at(tmp_path / "f")
    linked = tmp_path / "link"
    linked.symlink_to(tmp_path)
    assert Workspace.at(linked).root == tmp_path.resolve()


def test_hard_links_are_refused(tree: tuple[Workspace, Path]) -> None:
    ws, tmp = tree
    os.link(tmp / "outside" / "secret.txt", ws.root / "linked.txt")
    with pytest.raises(WorkspaceError) as info:
        ws.open("linked.txt")
    assert info.value.code == "hard_linked"
    assert "copy" in info.value.detail and "2 hard links" in info.value.detail
    # an inside file with a second name inside is refused too (it cannot be told apart)
    os.link(ws.root / "report.md", ws.root / "sub" / "report-again.md")
    assert refused(ws, "report.md") == "hard_linked"
    # a copy has one link and is delivered
    (ws.root / "copy.txt").write_bytes((ws.root / "linked.txt").read_bytes())
    _, fh = ws.open("copy.txt")
    with fh:
        assert fh.read() == b"secret\n"


def test_a_hard_link_made_after_the_check_is_caught_on_the_opened_file(
    tree: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, tmp = tree
    target = ws.root / "sub" / "data.csv"
    locate = Workspace.locate

    def then_link(self: Workspace, file_path: str) -> Path:
        resolved = locate(self, file_path)  # checked with one link ...
        os.link(target, tmp / "outside" / "data.csv")  # ... and a second name appears
        return resolved

    monkeypatch.setattr(Workspace, "locate", then_link)
    assert refused(ws, "sub/data.csv") == "hard_linked"


def _place(ws: Workspace, path: str | None, *, overwrite: bool = False) -> Path:
    """Write b"new" at ``path`` (default name ``art.bin``) through a placement."""
    placement = ws.place(path, "art.bin", overwrite=overwrite)
    placement.file.write(b"new")
    placement.commit()
    assert placement.path.read_bytes() == b"new"
    return placement.path


def test_placing_files_inside(tree: tuple[Workspace, Path]) -> None:
    ws, _ = tree
    assert _place(ws, None) == ws.root / "art.bin"
    assert _place(ws, "sub") == ws.root / "sub" / "art.bin"  # a directory gets the name
    assert _place(ws, "a/b/c.bin") == ws.root / "a" / "b" / "c.bin"  # directories made
    assert _place(ws, str(ws.root / "abs.bin")) == ws.root / "abs.bin"
    # a link that stays inside: its target is written
    assert _place(ws, "inner", overwrite=True) == ws.root / "sub" / "data.csv"
    assert not [p for p in ws.root.rglob("*.part")]


def test_placing_never_replaces_unless_asked(tree: tuple[Workspace, Path]) -> None:
    ws, _ = tree
    with pytest.raises(WorkspaceError) as info:
        ws.place("report.md", "art.bin", overwrite=False)
    assert info.value.code == "file_exists"
    # a file that appears while the bytes are written is not replaced either
    placement = ws.place("late.md", "art.bin", overwrite=False)
    (ws.root / "late.md").write_text("theirs")
    with pytest.raises(WorkspaceError) as info:
        placement.commit()
    assert info.value.code == "file_exists"
    assert (ws.root / "late.md").read_text() == "theirs"
    assert _place(ws, "report.md", overwrite=True) == ws.root / "report.md"
    for path, code in (("sub", "file_exists"), (".", "file_exists")):
        (ws.root / "sub" / "art.bin").write_text("x")
        (ws.root / "art.bin").write_text("x")
        with pytest.raises(WorkspaceError) as info:
            ws.place(path, "art.bin", overwrite=False)
        assert info.value.code == code
    (ws.root / "d" / "art.bin" / "art.bin").mkdir(parents=True)  # no room for the name
    with pytest.raises(WorkspaceError) as info:
        ws.place("d/art.bin", "art.bin", overwrite=True)
    assert info.value.code == "is_a_directory"
    assert not [p for p in ws.root.rglob("*.part")]


def test_placing_outside_is_refused_and_writes_nothing(tree: tuple[Workspace, Path]) -> None:
    ws, tmp = tree
    before = sorted(tmp.rglob("*"))
    for path in (
        "../x.bin",
        "sub/../../x.bin",
        str(tmp / "outside" / "x.bin"),
        "../ws-2/x.bin",
        "escape",  # a link to a file outside
        "escape-dir/x.bin",  # through a linked directory
        "escape-dir/new/x.bin",  # no directory is made outside either
        "/etc/x.bin",
    ):
        with pytest.raises(WorkspaceError) as info:
            ws.place(path, "art.bin", overwrite=True)
        assert info.value.code == "outside_workspace", path
    for name in ("", ".", "..", "a/b"):
        with pytest.raises(WorkspaceError) as info:
            ws.place(None, name, overwrite=False)
        assert info.value.code == "invalid_name"
    assert sorted(tmp.rglob("*")) == before
    assert (tmp / "outside" / "secret.txt").read_text() == "secret\n"


def test_a_discarded_placement_leaves_nothing(tree: tuple[Workspace, Path]) -> None:
    ws, _ = tree
    before = sorted(ws.root.rglob("*"))
    placement = ws.place("gone.bin", "art.bin", overwrite=False)
    placement.file.write(b"half")
    placement.discard()
    placement.discard()  # twice is fine
    assert sorted(ws.root.rglob("*")) == before


def test_placing_under_a_file_or_a_link_swapped_in_is_refused(tree: tuple[Workspace, Path]) -> None:
    ws, tmp = tree
    with pytest.raises(WorkspaceError) as info:
        ws.place("report.md/x.bin", "art.bin", overwrite=False)
    assert info.value.code == "not_a_directory"
    # a directory replaced by a link to outside after the path was resolved: the
    # directories are opened one by one without following links
    with pytest.raises(WorkspaceError) as info:
        ws._open_directories(ws.root / "escape-dir" / "new", "escape-dir/new/x.bin")
    assert info.value.code == "not_a_directory"
    assert sorted(p.name for p in (tmp / "outside").iterdir()) == ["secret.txt"]
