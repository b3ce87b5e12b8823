"""Checks on the files rnnfuse reads: a regular file, within a size its format allows.

Nothing in a file is trusted.  Before a loader reads a file it asks :func:`check_regular_file`:
a device (``/dev/zero``), a FIFO or a socket is refused, as is a file larger than the format
can hold, so that no read can run without end or exhaust memory.  Symbolic links are followed
(a link to a regular file is a regular file).
"""

from __future__ import annotations

import os
import stat

__all__ = ["check_regular_file", "NotRegularFileError", "KIB", "MIB", "GIB"]

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


class NotRegularFileError(ValueError):
    """A path that is not a regular file, or one larger than its format allows."""


def check_regular_file(path: str | os.PathLike[str], what: str, max_bytes: int | None = None) -> int:
    """The size of ``path`` after checking that it is a regular file of at most ``max_bytes``.

    ``what`` names the expected content in messages (``"a .safetensors file"``).  Raises
    ``FileNotFoundError`` for a missing path, ``IsADirectoryError`` for a directory and
    :class:`NotRegularFileError` (a ``ValueError``) for anything else that is not a regular
    file or is too large.
    """
    shown = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file (expected {what})") from None
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"{shown}: is a directory; expected {what}")
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(f"{shown}: not a regular file (a device, FIFO or socket); expected {what}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise NotRegularFileError(f"{shown}: {info.st_size:,} bytes, more than {what} may hold "
                                  f"({max_bytes:,} bytes at most)")
    return info.st_size
