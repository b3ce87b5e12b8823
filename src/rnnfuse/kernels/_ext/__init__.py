"""The BPTT kernels' time loop and the padded stack's glue in C++ (``bptt.cpp``), compiled on
first use.

:func:`extension` returns the compiled module, building it the first time on a machine
(:mod:`.build`: one folder per version in PyTorch's extension cache, ``TORCH_EXTENSIONS_DIR``,
by default ``~/.cache/torch_extensions``; a lock that dies with its holder; a bounded wait;
one line when a build starts and ends), so a later process only loads the built library.
``rnnfuse build-kernels`` (or ``python -m rnnfuse.kernels``) builds it ahead of time.  It
needs a C++ compiler and ``ninja`` (a dependency of the package) at run time; without them,
if the build fails or another process's build outlasts the wait, it warns once and returns
``None``, and the kernels run their pure-PyTorch loop (same equations, same results to
rounding).  ``RNNFUSE_NO_EXTENSION=1``
forces that fallback; :func:`disabled` does so within a block (the tests run both).

On x86 CPUs with AVX2 the extension is compiled for AVX2 and FMA (a build per instruction
set: its flags are part of the build's name), its elementwise loops using ATen's vector types (and
the SLEEF functions PyTorch ships).  It is compiled with OpenMP (``-fopenmp``; the runtime is the
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

from .build import BuildSpec, BuildTimeout, load_extension

ENV_DISABLE = "RNNFUSE_NO_EXTENSION"
_SOURCE = Path(__file__).with_name("bptt.cpp")
EXPECTED_SECONDS = 40.0  # a first build on 2 cores (AMD EPYC): 35-50 s
_LOCK = threading.Lock()
_state: dict[str, object] = {"tried": False, "module": None, "seconds": None}
_local = threading.local()


def _flags() -> tuple[str, list[str]]:
    """The build's instruction set and compiler flags for this CPU."""
    flags = ["-O3"]
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # older torch
        capability = "DEFAULT"
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64") and capability.startswith(("AVX2", "AVX512")):
        return "avx2", [*flags, "-mavx2", "-mfma", "-DCPU_CAPABILITY_AVX2"]
    return "generic", flags


def specs() -> list[BuildSpec]:
    """The builds to try, in order: with OpenMP (PyTorch's CPU kernels run their
    ``at::parallel_for`` with it; without it the extension's parallel loops run on one
    thread), then without, for a compiler that has no OpenMP."""
    suffix, cflags = _flags()
    stem = f"rnnfuse_bptt_{suffix}"

    def spec(stem: str, cflags: tuple[str, ...], ldflags: tuple[str, ...] = ()) -> BuildSpec:
        return BuildSpec(
            stem=stem,
            cflags=cflags,
            ldflags=ldflags,
            sources=(_SOURCE,),
            label="C++ kernels",
            expected_seconds=EXPECTED_SECONDS,
        )

    return [
        # the OpenMP runtime is PyTorch's own: libtorch_cpu has loaded its libgomp.so.1 already
        spec(f"{stem}_omp", (*cflags, "-fopenmp"), ("-fopenmp",)),
        spec(stem, tuple(cflags)),
    ]


def _build() -> ModuleType | None:
    """Build (once per machine and version) or load the library: :func:`.build.load_extension`
    for each of :func:`specs` until one builds."""
    start = time.perf_counter()
    verbose = os.environ.get("RNNFUSE_EXTENSION_VERBOSE") == "1"
    first, *rest = specs()
    try:
        module, _ = load_extension(first, verbose=verbose)
    except BuildTimeout:
        raise
    except Exception:
        if not rest:
            raise
        module, _ = load_extension(rest[0], verbose=verbose)
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
                        f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}); using "
                        "the pure-PyTorch kernels (a peephole LSTM trains about 2x slower; "
                        f"`rnnfuse build-kernels` shows why; set {ENV_DISABLE}=1 to skip the "
                        "build)",
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
