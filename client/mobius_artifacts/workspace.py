"""The files an agent may deliver: regular files inside one workspace directory.

A path is taken relative to the workspace (or absolute inside it) and resolved
with every symbolic link followed; what it resolves to must lie inside the
workspace's own resolved path. The file is then opened without following a
link, and the opened file itself is checked again (its path through
``/proc/self/fd`` where the system has one, else its device and inode), so a
link swapped in between the check and the open cannot lead outside either.

A regular file with more than one hard link is refused: its other names may lie
outside the workspace, and nothing can show they do not. The rule is checked on
the opened file itself (``fstat``), so a link made between a check and the open
is caught as well; a copy of the file (which has one link) can be delivered.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mobius_artifacts.errors import ConfigurationError

ENV_WORKSPACE = "MOBIUS_WORKSPACE"


class WorkspaceError(Exception):
    """A path an agent may not deliver; ``code`` is stable, ``detail`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class Workspace:
    """A directory whose regular files may be delivered; ``root`` is its resolved path."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> Workspace:
        """The workspace at ``path`` (an existing directory, else :class:`ConfigurationError`)."""
        try:
            root = Path(path).resolve(strict=True)
        except (OSError, RuntimeError) as exc:
            raise ConfigurationError(f"the workspace {str(path)!r} cannot be used: {exc}") from None
        if not root.is_dir():
            raise ConfigurationError(f"the workspace {str(path)!r} is not a directory")
        return cls(root)

    def locate(self, file_path: str) -> Path:
        """The resolved path of ``file_path``, inside the workspace and a regular file."""
        if not file_path or "\0" in file_path:
            raise WorkspaceError("invalid_path", "give the path of a file in the workspace")
        candidate = Path(file_path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve(strict=False)
        except (OSError, RuntimeError) as exc:  # a loop of symbolic links, say
            detail = f"{file_path!r} cannot be resolved: {exc}"
            raise WorkspaceError("invalid_path", detail) from None
        if not resolved.is_relative_to(self.root):
            raise WorkspaceError(
                "outside_workspace",
                f"{file_path!r} resolves to {resolved}, outside the workspace {self.root}; "
                "only files inside the workspace can be delivered",
            )
        try:
            found = resolved.stat()
        except FileNotFoundError:
            raise WorkspaceError(
                "file_not_found", f"{file_path!r} does not exist in the workspace {self.root}"
            ) from None
        except OSError as exc:
            raise WorkspaceError("os_error", f"{file_path!r}: {exc.strerror or exc}") from None
        mode = found.st_mode
        if stat.S_ISDIR(mode):
            raise WorkspaceError(
                "is_a_directory",
                f"{file_path!r} is a directory; deliver the files in it one by one",
            )
        if not stat.S_ISREG(mode):
            raise WorkspaceError("not_a_file", f"{file_path!r} is not a regular file")
        _refuse_hard_links(found, file_path)
        return resolved

    def open(self, file_path: str) -> tuple[Path, IO[bytes]]:
        """Locate ``file_path`` and open it for reading (blocking: call it in a thread)."""
        resolved = self.locate(file_path)
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(resolved, flags | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise WorkspaceError("os_error", f"{file_path!r}: {exc.strerror or exc}") from None
        try:
            self._check_opened(fd, resolved, file_path)
            return resolved, os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _check_opened(self, fd: int, resolved: Path, file_path: str) -> None:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise WorkspaceError("not_a_file", f"{file_path!r} is not a regular file")
        _refuse_hard_links(opened, file_path)
        proc = Path(f"/proc/self/fd/{fd}")
        try:
            where = Path(os.readlink(proc))
        except OSError:  # no /proc: the file opened must still be the one checked
            try:
                now = os.stat(resolved)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
                raise WorkspaceError(
                    "file_changed", f"{file_path!r} changed while it was being opened"
                ) from None
            return
        if not where.is_relative_to(self.root):
            raise WorkspaceError(
                "outside_workspace",
                f"{file_path!r} led to {where}, outside the workspace {self.root}",
            )


def _refuse_hard_links(found: os.stat_result, file_path: str) -> None:
    """A regular file with other names, which may lie outside the workspace, is refused."""
    if found.st_nlink > 1:
        raise WorkspaceError(
            "hard_linked",
            f"{file_path!r} has {found.st_nlink} hard links: another of its names may lie "
            "outside the workspace, which cannot be ruled out, so it is not delivered; "
            "deliver a copy of it instead (cp FILE FILE.copy)",
        )
