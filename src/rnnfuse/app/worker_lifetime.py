"""Worker processes that end with the process that started them.

``rnnfuse demo`` trains its models in a pool of spawned processes.  Killed (``SIGTERM``,
``SIGKILL``) the parent never reaches the code that stops the pool, and a worker busy with
a model would run on, orphaned, for minutes.  :func:`pool_options` gives a pool an
initializer that binds each worker to its parent: on Linux the kernel sends the worker
``SIGTERM`` when the parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread
checks once a second that the parent is still the worker's parent and ends the worker when
it is not.  An interrupted parent (``SIGINT``) leaves its ``with Pool(...)`` block, which
terminates the workers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from typing import Any

__all__ = ["pool_options", "bind_to_parent"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 1.0


def pool_options() -> dict[str, Any]:
    """Keyword arguments for ``multiprocessing.Pool`` whose workers end with this process."""
    return {"initializer": bind_to_parent, "initargs": (os.getpid(),)}


def bind_to_parent(parent_pid: int) -> None:
    """Make this worker end when the process ``parent_pid`` does (a pool's initializer)."""
    _parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="rnnfuse-parent-watch", daemon=True
    ).start()


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; ``False`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent_pid: int) -> None:
    """End the process once it has another parent (the original one ended)."""
    while True:
        time.sleep(POLL_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)
