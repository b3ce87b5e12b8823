"""Checks on the files rnnfuse reads: a regular file, within a size its format allows.

Nothing in a file is trusted.  Every read of a file goes through this module, by the same
rules wherever it happens:

* :func:`read_regular_file` opens without blocking (a FIFO opens at once instead of waiting
  for a writer), checks the *open* file with ``fstat`` (a device such as ``/dev/zero``, a
  FIFO or a socket is refused; so is a file larger than its format may hold, sparse or not)
  and reads at most that many bytes.  ``follow_symlinks=False`` (``O_NOFOLLOW``) refuses a
  symbolic link, for the files of a run directory.
* :func:`check_regular_file` is the same check by path, for the readers (safetensors, h5py)
  that open the file themselves.
* :func:`loads_json` parses JSON with a limit on its nesting, so that no reader recurses
  without bound; :func:`read_zip_member` inflates a zip member only after checking its
  declared size, its compression and its ratio, and stops at the limit while inflating.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import zipfile
from typing import Any

import numpy as np

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
MAX_JSON_DEPTH = 100  # a Keras configuration nests about 15 deep, rnnfuse's own files 5
MAX_ZIP_RATIO = 100  # inflated / compressed; weights and JSON compress far less
_ZIP_RATIO_FREE = 16 * MIB  # members this small are not held to the ratio
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


class NotRegularFileError(ValueError):
    """A path that is not a regular file, or one larger than its format allows."""


def check_regular_file(
    path: str | os.PathLike[str], what: str, max_bytes: int | None = None
) -> int:
    """The size of ``path`` after checking that it is a regular file of at most ``max_bytes``.

    ``what`` names the expected content in messages (``"a .safetensors file"``).  Raises
    ``FileNotFoundError`` for a missing path, ``IsADirectoryError`` for a directory and
    :class:`NotRegularFileError` (a ``ValueError``) for anything else that is not a regular
    file or is too large.  Symbolic links are followed (a link to a regular file is one).
    """
    shown = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file (expected {what})") from None
    _check_info(shown, info, what, max_bytes)
    return info.st_size


def _check_info(shown: str, info: os.stat_result, what: str, max_bytes: int | None) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(f"{shown}: is a directory; expected {what}")
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(
            f"{shown}: not a regular file (a device, FIFO or socket); expected {what}"
        )
    if max_bytes is not None and info.st_size > max_bytes:
        raise NotRegularFileError(
            f"{shown}: {info.st_size:,} bytes, more than {what} may hold "
            f"({max_bytes:,} bytes at most)"
        )


def open_regular_file(
    path: str | os.PathLike[str],
    what: str,
    max_bytes: int | None = None,
    *,
    follow_symlinks: bool = True,
) -> int:
    """A descriptor of the regular file ``path``, opened for reading.

    Opened with ``O_NONBLOCK`` (a FIFO never blocks the open) and checked with ``fstat`` on
    the open descriptor, so the file checked is the file read; errors as
    :func:`check_regular_file`, and with ``follow_symlinks=False`` a symbolic link is refused
    with :class:`NotRegularFileError`.  The caller closes the descriptor.
    """
    shown = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{shown}: no such file (expected {what})") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:
            raise NotRegularFileError(
                f"{shown}: a symbolic link; expected {what} (never a link)"
            ) from None
        raise
    try:
        _check_info(shown, os.fstat(fd), what, max_bytes)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(
    path: str | os.PathLike[str], what: str, max_bytes: int, *, follow_symlinks: bool = True
) -> bytes:
    """The bytes of the regular file ``path``, at most ``max_bytes`` of them (opened and
    checked by :func:`open_regular_file`)."""
    fd = open_regular_file(path, what, max_bytes, follow_symlinks=follow_symlinks)
    try:
        return _read_at_most(fd, os.fspath(path), what, max_bytes)
    finally:
        os.close(fd)


def _read_at_most(fd: int, shown: str, what: str, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(MIB, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:  # the file grew after the check
            raise NotRegularFileError(
                f"{shown}: more than {what} may hold ({max_bytes:,} bytes at most)"
            )


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``data`` (strings skipped)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    codes = np.frombuffer(_STRING.sub(b"", raw), dtype=np.uint8)
    if codes.size == 0:
        return 0
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        codes, (ord("]"), ord("}"))
    )
    return int(np.cumsum(steps).max(initial=0))


def loads_json(data: bytes | str, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads(data)`` after checking that it nests at most ``max_depth`` deep.

    Raises ``ValueError`` naming ``what`` for deeper nesting, text that is not JSON or bytes
    that are not UTF-8 (``json.JSONDecodeError`` is a ``ValueError`` too).
    """
    depth = json_depth(data)
    if depth > max_depth:
        raise ValueError(
            f"{what}: JSON nested {depth} deep, more than the {max_depth} levels allowed"
        )
    try:
        return json.loads(data)
    except RecursionError:  # unreachable within MAX_JSON_DEPTH; kept as a last guard
        raise ValueError(f"{what}: JSON nested too deep") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{what}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None


def read_zip_member(archive: zipfile.ZipFile, name: str, what: str, max_bytes: int) -> bytes:
    """The inflated bytes of member ``name``, at most ``max_bytes`` of them.

    Refused before inflating (``ValueError`` naming ``what``): an absent member, an encrypted
    one, a compression other than stored or deflate, a declared size over ``max_bytes`` or
    over :data:`MAX_ZIP_RATIO` times its compressed size.  While inflating, the actual size is
    held to the declared one.
    """
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{what}: the archive has no {name!r}") from None
    if info.flag_bits & 0x1:
        raise ValueError(f"{what}: {name!r} is encrypted; expected a plain member")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(
            f"{what}: {name!r} uses compression method {info.compress_type}; "
            f"expected stored (0) or deflate (8)"
        )
    limit = min(max_bytes, max(_ZIP_RATIO_FREE, MAX_ZIP_RATIO * info.compress_size))
    if info.file_size > limit:
        raise ValueError(
            f"{what}: {name!r} declares {info.file_size:,} bytes inflated from "
            f"{info.compress_size:,}; at most {limit:,} are read"
        )
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)
    if len(data) != info.file_size:
        raise ValueError(
            f"{what}: {name!r} inflates to {'more' if len(data) > info.file_size else 'fewer'} "
            f"bytes than the {info.file_size:,} it declares"
        )
    return data
