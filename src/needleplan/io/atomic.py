"""Atomic outputs: a file or folder appears complete or not at all, and existing work is never clobbered."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import NeedleplanError, describe_path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    Parent folders are created. On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # keep the full name at the end: writers such as SimpleITK pick the format from the extension
    fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes the file private (0600); give it the usual permissions
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


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
    try:
        yield tmp
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
