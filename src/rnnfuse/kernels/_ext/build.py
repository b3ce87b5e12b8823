"""Building a C++ extension once per machine and version, without ever waiting without bound.

PyTorch's :func:`torch.utils.cpp_extension.load` builds into a folder named after the
extension and guards it with a lock *file* (``<folder>/lock``, created with ``O_EXCL``): a
process killed while building leaves it behind, and every later process waits on it for
ever.  Here:

- the folder is named by what determines the binary (:func:`build_name`: a hash of the
  sources, the compiler flags, the Python version and torch's version and C++ ABI), so two
  versions never share a folder and never rebuild each other;
- the build is guarded by an ``flock`` on ``<folder>.flock`` (:func:`exclusive`), which the
  kernel releases when its holder dies, however it dies; whoever holds it removes a ``lock``
  file that a killed build left (nobody else can be building that folder);
- the wait for another process's build is bounded (:data:`ENV_WAIT`, default
  :data:`DEFAULT_WAIT` seconds); past it :class:`BuildTimeout` is raised and the caller
  falls back to the pure-PyTorch kernels;
- a build (not a load of a library already built) says so in one line when it starts and
  when it ends.

Platforms without ``fcntl`` (Windows) build without the ``flock``, under PyTorch's own lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import torch

try:
    import fcntl
except ImportError:  # Windows: PyTorch's lock file only
    fcntl = None  # type: ignore[assignment]

ENV_WAIT = "RNNFUSE_BUILD_WAIT"
DEFAULT_WAIT = 900.0  # seconds; a loaded machine has taken 526 s to build the kernels
_POLL = 0.2


class BuildTimeout(RuntimeError):
    """Another process held the build's lock for longer than the allowed wait."""


@dataclass(frozen=True)
class BuildSpec:
    """What to compile: ``stem`` names the extension (``rnnfuse_bptt``), the sources and flags
    make the rest of its name (:func:`build_name`)."""

    stem: str
    sources: tuple[Path, ...]
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    label: str = "C++ kernels"
    expected_seconds: float | None = field(default=None, compare=False)


def _abi() -> str:
    return str(int(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", 0)))


def build_name(spec: BuildSpec) -> str:
    """``<stem>_<hash>``: the hash of the sources' bytes, the flags, the Python version and
    torch's version and C++ ABI (16 hex digits)."""
    digest = hashlib.sha256()
    for source in spec.sources:
        digest.update(Path(source).read_bytes())
        digest.update(b"\0")
    context = {
        "cflags": spec.cflags,
        "ldflags": spec.ldflags,
        "torch": torch.__version__,
        "abi": _abi(),
        "python": sys.version_info[:2],
        "platform": sys.platform,
    }
    digest.update(json.dumps(context, sort_keys=True).encode())
    return f"{spec.stem}_{digest.hexdigest()[:16]}"


def build_root() -> Path:
    """Where the builds go: ``TORCH_EXTENSIONS_DIR`` if set, else PyTorch's default cache
    (``~/.cache/torch_extensions``)."""
    from torch.utils import cpp_extension

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root())


def build_folder(spec: BuildSpec, root: Path | None = None) -> Path:
    """Where ``spec`` builds to: ``<root>/<build_name(spec)>`` (``root``: :func:`build_root`)."""
    return (root or build_root()) / build_name(spec)


def wait_limit() -> float:
    """The longest wait for another process's build, in seconds (:data:`ENV_WAIT`)."""
    raw = os.environ.get(ENV_WAIT)
    if raw is None or raw.strip() == "":
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{ENV_WAIT}: expected a number of seconds, got {raw!r}") from None
    if not value >= 0:
        raise ValueError(f"{ENV_WAIT}: expected a number of seconds >= 0, got {raw!r}")
    return value


@contextlib.contextmanager
def exclusive(
    path: Path, timeout: float, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold an ``flock`` on ``path`` (created if absent) within the block; wait at most
    ``timeout`` seconds for another holder (:class:`BuildTimeout` past it).  ``on_wait`` is
    called once if the lock is not free at once.  The kernel releases the lock when its
    holder's process ends, killed or not."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, timeout, on_wait)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, timeout: float, on_wait: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            raise BuildTimeout(
                f"another process has held {path} for over {timeout:.0f} s (set "
                f"{ENV_WAIT} to wait longer)"
            )
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        time.sleep(_POLL)


def _library(folder: Path, name: str) -> Path:
    return folder / f"{name}{'.pyd' if sys.platform == 'win32' else '.so'}"


def _say(message: str) -> None:
    print(f"rnnfuse: {message}", file=sys.stderr, flush=True)


def load_extension(
    spec: BuildSpec,
    *,
    root: Path | None = None,
    timeout: float | None = None,
    say: Callable[[str], None] = _say,
    verbose: bool = False,
) -> tuple[ModuleType, bool]:
    """Build (once) and load ``spec``; return the module and whether this call built it.

    Raises :class:`BuildTimeout` when another process holds the build for longer than
    ``timeout`` (default :func:`wait_limit`), and whatever the build raises when it fails."""
    from torch.utils import cpp_extension

    folder = build_folder(spec, root)
    name = folder.name
    limit = wait_limit() if timeout is None else timeout

    def waiting() -> None:
        say(
            f"waiting for another process building the {spec.label} in {folder} "
            f"(at most {limit:.0f} s)"
        )

    with exclusive(folder.with_name(name + ".flock"), limit, waiting):
        folder.mkdir(parents=True, exist_ok=True)
        stale = (
            folder / "lock"
        )  # PyTorch's lock file: nobody can be building while we hold the flock
        if fcntl is not None and stale.exists():
            stale.unlink()
        building = not _library(folder, name).exists()
        if building:
            about = f", about {spec.expected_seconds:.0f} s" if spec.expected_seconds else ""
            say(f"building the {spec.label} for this machine, once per version{about}, in {folder}")
        began = time.perf_counter()
        module = cpp_extension.load(
            name=name,
            sources=[str(s) for s in spec.sources],
            extra_cflags=list(spec.cflags),
            extra_ldflags=list(spec.ldflags),
            build_directory=str(folder),
            verbose=verbose,
        )
        if building:
            say(f"built the {spec.label} in {time.perf_counter() - began:.0f} s")
    return module, building
