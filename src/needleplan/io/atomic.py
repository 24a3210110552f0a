"""Atomic outputs: a file or folder appears complete or not at all, and existing work is never clobbered."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import NeedleplanError, describe_path


#: Prefix of the temporary files :func:`atomic_file` writes.
PART_PREFIX = ".part-"
#: A temporary file untouched this long was left by a writer that died: a live writer's file changes as it is
#: written. Long, because the folder may be shared with another computer's writers, whose processes we cannot see.
STALE_PART_SECONDS = 3600.0
#: Temporary files and folders this process is writing now (removed by :func:`remove_unfinished`).
_UNFINISHED: set[Path] = set()
#: Folders this process has swept of stale temporary files.
_SWEPT: set[Path] = set()


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Parent folders are created. On an exception the temporary file is removed and ``path`` is untouched. The
    first write of a process into a folder removes the stale temporary files that killed writers left there
    (:func:`remove_stale_parts`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(os.path.abspath(path.parent))
    if folder not in _SWEPT:
        _SWEPT.add(folder)
        remove_stale_parts(folder)
    # keep the full name at the end: writers such as SimpleITK pick the format from the extension
    fd, tmp = tempfile.mkstemp(prefix=PART_PREFIX, suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _UNFINISHED.add(tmp_path)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes the file private (0600); give it the usual permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
        _UNFINISHED.discard(tmp_path)


def remove_stale_parts(folder: str | Path, older_than_s: float = STALE_PART_SECONDS) -> int:
    """Remove the ``.part-*`` temporary files in ``folder`` not modified for ``older_than_s`` seconds.

    Parameters
    ----------
    folder : path
        Where to look (not in sub-folders).
    older_than_s : float
        Age of the last modification beyond which a temporary file is taken as left by a writer that died.

    Returns
    -------
    int
        How many files were removed.
    """
    now, removed = time.time(), 0
    for leftover in Path(folder).glob(f"{PART_PREFIX}*"):
        try:
            if leftover.is_file() and now - leftover.stat().st_mtime > older_than_s:
                leftover.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished or another process removed it meanwhile
            continue
    return removed


def remove_unfinished() -> None:
    """Remove the temporary files and folders this process is writing: it is stopping in the middle (Ctrl+C)."""
    for tmp in list(_UNFINISHED):
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_directory(folder: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; on success it is renamed to ``folder``.

    ``folder`` must not exist, or be empty. On an exception the temporary folder is removed.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir() or any(folder.iterdir()):
            raise NeedleplanError(
                f"output folder {describe_path(folder)} already exists and is not empty; "
                "choose another folder or remove it"
            )
        folder.rmdir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    _UNFINISHED.add(tmp)
    try:
        yield tmp
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        _UNFINISHED.discard(tmp)
