"""One writer per run directory: an advisory lock on ``<out>/.lock``.

``rnnfuse train`` (rank 0 under torchrun) takes the lock before it writes anything in
``--out`` and keeps it until it exits.  The lock is ``fcntl.flock`` on an open file, so the
operating system releases it when the process ends in any way (a kill included): a killed
run never blocks its ``--resume``.  The file holds the holder's PID, for the message of a
second run that finds it taken.  Where ``fcntl`` does not exist the lock is not taken.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME"]

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """The exclusive lock of the run directory ``out`` (a context manager)."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock without waiting; :class:`RunLockedError` names the holder's PID."""
        if fcntl is None or self._fd is not None:
            return self
        from .checkpoint import file_mode

        fd = _open_lock_file(self.path, file_mode())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"--out: {self.path.parent} is in use by another `rnnfuse train` (PID {holder}); "
                "wait for it to finish or stop it, or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Give the lock back (the file stays; an unlocked file means a free directory)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _open_lock_file(path: Path, mode: int) -> int:
    """Open (or create) the lock file without following a link and without blocking on a
    FIFO; ``OSError`` naming it unless it is a regular file."""
    flags = (
        os.O_RDWR
        | os.O_CREAT
        | getattr(os, "O_CLOEXEC", 0)
        | getattr(os, "O_NOFOLLOW", 0)
        | getattr(os, "O_NONBLOCK", 0)
    )
    try:
        fd = os.open(path, flags, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(
                errno.ELOOP, f"{path} is a symbolic link; the lock file is never a link"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{path} is not a regular file (a FIFO, device or socket)")
    return fd


def _holder(fd: int) -> str:
    """The PID written in the lock file, or ``unknown``."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"
