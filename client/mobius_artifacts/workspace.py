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

A file fetched into the workspace (:meth:`Workspace.place`) follows the same
rules the other way: its destination resolves inside the workspace; its
directories are made (when missing) and opened one by one from the workspace
down without following a link; its bytes go to a temporary name beside it,
created in the directory held open without following a link; and it takes the
destination's name only by :meth:`Placement.commit`: linked there (so an
existing file is never replaced), or renamed over an existing regular file when
overwriting was asked for.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
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

    def place(self, file_path: str | None, default_name: str, *, overwrite: bool) -> Placement:
        """A file to write at ``file_path`` (default: ``default_name`` in the workspace).

        A destination that is an existing directory receives ``default_name`` in it;
        missing directories inside the workspace are created. Blocking: call it in
        a thread, and :meth:`Placement.commit` or :meth:`Placement.discard` it.
        """
        if default_name in ("", ".", "..") or "/" in default_name or "\0" in default_name:
            raise WorkspaceError(
                "invalid_name", f"{default_name!r} cannot name a file: give a path"
            )
        file_path = file_path or default_name
        if "\0" in file_path:
            raise WorkspaceError("invalid_path", "give a path in the workspace")
        candidate = Path(file_path)
        if not candidate.is_absolute():
            candidate = self.root / candidate
        try:
            resolved = candidate.resolve(strict=False)
            if resolved.is_dir():
                resolved = (resolved / default_name).resolve(strict=False)
        except (OSError, RuntimeError) as exc:
            detail = f"{file_path!r} cannot be resolved: {exc}"
            raise WorkspaceError("invalid_path", detail) from None
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise WorkspaceError(
                "outside_workspace",
                f"{file_path!r} resolves to {resolved}, outside the workspace {self.root}; "
                "files are written inside the workspace only",
            )
        parent, name = resolved.parent, resolved.name
        dir_fd = self._open_directories(parent, file_path)
        try:
            self._check_directory(dir_fd, parent, file_path)
            _check_destination(dir_fd, name, file_path, overwrite)
            temp = f".{name}.{secrets.token_hex(6)}.part"
            create = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(temp, create | getattr(os, "O_CLOEXEC", 0), 0o644, dir_fd=dir_fd)
        except OSError as exc:
            os.close(dir_fd)
            raise WorkspaceError("os_error", f"{file_path!r}: {exc.strerror or exc}") from None
        except BaseException:
            os.close(dir_fd)
            raise
        return Placement(
            path=resolved,
            dir_fd=dir_fd,
            name=name,
            temp=temp,
            file=os.fdopen(fd, "w+b"),
            overwrite=overwrite,
        )

    def _open_directories(self, parent: Path, file_path: str) -> int:
        """``parent`` opened, each directory from the workspace down made when missing and
        opened without following a link (one swapped in is refused)."""
        flags = (
            os.O_RDONLY
            | getattr(os, "O_DIRECTORY", 0)
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            dir_fd = os.open(self.root, flags)
        except OSError as exc:
            raise WorkspaceError("os_error", f"{file_path!r}: {exc.strerror or exc}") from None
        try:
            for part in parent.relative_to(self.root).parts:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=dir_fd)
                try:
                    inner = os.open(part, flags, dir_fd=dir_fd)
                except OSError as exc:
                    if isinstance(exc, NotADirectoryError) or exc.errno == errno.ELOOP:
                        raise WorkspaceError(
                            "not_a_directory",
                            f"{file_path!r}: {part!r} in {parent} is not a directory",
                        ) from None
                    raise WorkspaceError(
                        "os_error", f"{file_path!r}: {exc.strerror or exc}"
                    ) from None
                os.close(dir_fd)
                dir_fd = inner
        except BaseException:
            os.close(dir_fd)
            raise
        return dir_fd

    def _check_directory(self, dir_fd: int, parent: Path, file_path: str) -> None:
        """The directory opened is the one checked, inside the workspace."""
        self._confirm_inside(
            dir_fd, parent, file_path, f"{file_path!r}: {parent} changed while it was being opened"
        )

    def _check_opened(self, fd: int, resolved: Path, file_path: str) -> None:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise WorkspaceError("not_a_file", f"{file_path!r} is not a regular file")
        _refuse_hard_links(opened, file_path)
        self._confirm_inside(
            fd, resolved, file_path, f"{file_path!r} changed while it was being opened"
        )

    def _confirm_inside(self, fd: int, path: Path, file_path: str, changed: str) -> None:
        """What ``fd`` opened lies inside the workspace: by ``/proc/self/fd``, or where
        there is none, by being still the file or directory at ``path``."""
        try:
            where = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            opened = os.fstat(fd)
            try:
                now: os.stat_result | None = os.stat(path)
            except OSError:
                now = None
            if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
                raise WorkspaceError("file_changed", changed) from None
            return
        if not where.is_relative_to(self.root):
            raise WorkspaceError(
                "outside_workspace",
                f"{file_path!r} led to {where}, outside the workspace {self.root}",
            )


def _check_destination(dir_fd: int, name: str, file_path: str, overwrite: bool) -> None:
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    mode = existing.st_mode
    if stat.S_ISDIR(mode):
        raise WorkspaceError("is_a_directory", f"{file_path!r} is a directory")
    if not stat.S_ISREG(mode):
        raise WorkspaceError("not_a_file", f"{file_path!r} exists and is not a regular file")
    if not overwrite:
        raise WorkspaceError(
            "file_exists", f"{file_path!r} exists; pass overwrite: true to replace it"
        )


@dataclass
class Placement:
    """A file being written: ``file`` is open at ``temp``, beside ``name`` in ``dir_fd``.

    ``path`` is where it lands. :meth:`commit` gives it its name; :meth:`discard`
    removes it. Both are blocking and close the directory.
    """

    path: Path
    dir_fd: int
    name: str
    temp: str
    file: IO[bytes]
    overwrite: bool

    def commit(self) -> None:
        """Flush the bytes to disk and give them the destination's name."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            fds = {"src_dir_fd": self.dir_fd, "dst_dir_fd": self.dir_fd}
            if self.overwrite:
                _check_destination(self.dir_fd, self.name, self.name, overwrite=True)
                os.rename(self.temp, self.name, **fds)
            else:
                try:
                    os.link(self.temp, self.name, **fds, follow_symlinks=False)
                except FileExistsError:
                    raise WorkspaceError(
                        "file_exists", f"{self.name!r} exists; pass overwrite: true to replace it"
                    ) from None
                os.unlink(self.temp, dir_fd=self.dir_fd)
            os.fsync(self.dir_fd)
        except BaseException:
            self.discard()
            raise
        os.close(self.dir_fd)
        self.dir_fd = -1

    def discard(self) -> None:
        """Remove the temporary file (once: later calls do nothing)."""
        if self.dir_fd < 0:
            return
        self.file.close()
        try:
            os.unlink(self.temp, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(self.dir_fd)
            self.dir_fd = -1


def _refuse_hard_links(found: os.stat_result, file_path: str) -> None:
    """A regular file with other names, which may lie outside the workspace, is refused."""
    if found.st_nlink > 1:
        raise WorkspaceError(
            "hard_linked",
            f"{file_path!r} has {found.st_nlink} hard links: another of its names may lie "
            "outside the workspace, which cannot be ruled out, so it is not delivered; "
            "deliver a copy of it instead (cp FILE FILE.copy)",
        )
