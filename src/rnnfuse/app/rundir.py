"""A run directory's entries are what they claim: never links, never devices or FIFOs.

A run directory may come from someone else (copied, unpacked) or lie where others can write
(``/tmp``).  A ``.lock`` that is a symbolic link would make ``train`` truncate the link's
target and write its PID there; a ``checkpoints`` link would make the run write into the
target and prune (delete) the target's ``step-*`` folders.  :func:`check_run_dir` refuses such
a directory before anything in it is read or written, naming every entry at fault; the
files themselves are then opened without following links (``O_NOFOLLOW``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["RunDirError", "check_run_dir", "check_real_dir"]

CHECKPOINTS = "checkpoints"


class RunDirError(ValueError):
    """A run directory holding links or entries that are not regular files or directories."""


def check_run_dir(out: Path) -> None:
    """Refuse ``out`` (if it exists) when it, any entry in it, in ``checkpoints/`` or in a
    checkpoint folder is a symbolic link or neither a regular file nor a directory, or when
    ``checkpoints`` is not a directory.  The message names every such entry."""
    out = Path(out)
    if not os.path.lexists(out):
        return
    check_real_dir(out, "--out")
    problems = _bad_entries(out, depth=0)
    if problems:
        shown = ", ".join(problems[:8]) + (
            f" and {len(problems) - 8} more" if len(problems) > 8 else ""
        )
        raise RunDirError(
            f"--out: {out} holds {shown}; a run directory's entries must be regular files "
            "and directories, never links "
            "(was it copied with its links, or changed by someone else?)"
        )


def check_real_dir(path: Path, what: str) -> None:
    """``RunDirError`` unless ``path`` is a directory and not a symbolic link to one."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise RunDirError(
            f"{what}: {path} is a symbolic link; expected a directory (links are not followed)"
        )
    if not stat.S_ISDIR(info.st_mode):
        raise RunDirError(f"{what}: {path} is not a directory")


def _bad_entries(directory: Path, depth: int) -> list[str]:
    """The entries of ``directory`` (and of ``checkpoints/`` and its ``step-*`` folders below
    it) that are links or not regular files.  An entry that vanishes while it is looked at
    (another run's atomic write renaming its temporary file, its pruning removing a checkpoint)
    is gone, so not refused."""
    try:
        return _scan(directory, depth)
    except FileNotFoundError:
        if depth == 0:
            raise
        return []


def _scan(directory: Path, depth: int) -> list[str]:
    problems = []
    with os.scandir(directory) as entries:
        for entry in entries:
            kind = _kind(entry)
            name = Path(entry.path)
            if kind is not None:
                problems.append(f"{name} ({kind})")
            elif (
                depth == 0 and entry.name == CHECKPOINTS and not entry.is_dir(follow_symlinks=False)
            ):
                problems.append(f"{name} (not a directory)")
            elif entry.is_dir(follow_symlinks=False) and (
                (depth == 0 and entry.name == CHECKPOINTS)
                or (depth == 1 and entry.name.startswith("step-"))
            ):
                problems += _bad_entries(name, depth + 1)
    return problems


def _kind(entry: os.DirEntry[str]) -> str | None:
    """What is wrong with ``entry``: ``"a symbolic link"``,
    ``"a FIFO, device or socket"``, or ``None``."""
    if entry.is_symlink():
        return "a symbolic link"
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except FileNotFoundError:  # removed since the directory was listed
        return None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "a FIFO, device or socket"
    return None
