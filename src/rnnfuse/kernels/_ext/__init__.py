"""The BPTT kernels' time loop and the padded stack's glue in C++ (``bptt.cpp``), compiled on
first use.

:func:`extension` returns the compiled module, building it the first time in a process
with :func:`torch.utils.cpp_extension.load` into PyTorch's extension cache
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), so a later process
only loads the built library.  It needs a C++ compiler and ``ninja`` at run time; without
them, or if the build fails, it warns once and returns ``None``, and the kernels run their
pure-PyTorch loop (same equations, same results to rounding).  ``RNNFUSE_NO_EXTENSION=1``
forces that fallback; :func:`disabled` does so within a block (the tests run both).

On x86 CPUs with AVX2 the extension is compiled for AVX2 and FMA (a build per instruction
set: the name carries it), its elementwise loops using ATen's vector types (and the SLEEF
functions PyTorch ships).  It is compiled with OpenMP (``-fopenmp``; the runtime is the
``libgomp`` PyTorch loads), so its ``at::parallel_for`` loops and each step's product, split
by columns, use PyTorch's intra-op threads; a compiler without OpenMP gets a build without
it (those loops then run on one thread).  With two threads (AMD EPYC) the peephole LSTM's
forward went from 1.27-1.39 to 1.12-1.20 of ``nn.LSTM``'s (one noisy run 1.34).
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["extension", "disabled", "available", "build_seconds", "ENV_DISABLE"]

ENV_DISABLE = "RNNFUSE_NO_EXTENSION"
_SOURCE = Path(__file__).with_name("bptt.cpp")
_LOCK = threading.Lock()
_state: dict[str, object] = {"tried": False, "module": None, "seconds": None}
_local = threading.local()


def _flags() -> tuple[str, list[str]]:
    """The build's name suffix and compiler flags for this CPU."""
    flags = ["-O3"]
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        capability = "DEFAULT"
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and capability.startswith(("AVX2", "AVX512")):
        return "avx2", [*flags, "-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"]
    return "generic", flags


def _build() -> ModuleType | None:
    """Build (or load) the library with OpenMP, as PyTorch's CPU kernels run their
    ``at::parallel_for`` (without it the extension's parallel loops run on one thread); where
    the compiler has no OpenMP, without it."""
    from torch.utils import cpp_extension

    suffix, cflags = _flags()
    start = time.perf_counter()
    verbose = os.environ.get("RNNFUSE_EXTENSION_VERBOSE") == "1"
    try:
        # the OpenMP runtime is PyTorch's own: libtorch_cpu has loaded its libgomp.so.1 already
        module = cpp_extension.load(name=f"rnnfuse_bptt_{suffix}_omp", sources=[str(_SOURCE)],
                                    extra_cflags=[*cflags, "-fopenmp"], extra_ldflags=["-fopenmp"], verbose=verbose)
    except Exception:
        module = cpp_extension.load(name=f"rnnfuse_bptt_{suffix}", sources=[str(_SOURCE)], extra_cflags=cflags,
                                    verbose=verbose)
    _state["seconds"] = time.perf_counter() - start
    return module


def _disabled_here() -> bool:
    return os.environ.get(ENV_DISABLE, "") not in ("", "0") or getattr(_local, "off", 0) > 0


def extension() -> ModuleType | None:
    """The compiled kernels, or ``None`` (disabled, or no compiler: the fallback runs)."""
    if _disabled_here():
        return None
    if not _state["tried"]:
        with _LOCK:
            if not _state["tried"]:
                try:
                    _state["module"] = _build()
                except Exception as exc:  # no compiler, no ninja, a failed build: fall back
                    warnings.warn(
                        f"rnnfuse: the C++ BPTT kernels could not be built ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}); using the "
                        f"pure-PyTorch kernels (slower; set {ENV_DISABLE}=1 to skip the build)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    _state["module"] = None
                _state["tried"] = True
    return _state["module"]  # type: ignore[return-value]


def available() -> bool:
    """Whether the compiled kernels are in use (builds them if needed)."""
    return extension() is not None


def build_seconds() -> float | None:
    """Seconds the first :func:`extension` call spent building or loading the library."""
    return _state["seconds"]  # type: ignore[return-value]


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run the pure-PyTorch kernels within the block (this thread only)."""
    _local.off = getattr(_local, "off", 0) + 1
    try:
        yield
    finally:
        _local.off -= 1
