"""``rnnfuse build-kernels`` (also ``python -m rnnfuse.kernels``): build the C++ kernels of
:mod:`rnnfuse.kernels._ext` ahead of time, so that no later call pays the build, and say
where they are and how long it took.

Exit status 0 when the kernels are built (now or before), 1 when they cannot be (the reason
on one line; the library then runs its pure-PyTorch loop), 2 when they are disabled by
``RNNFUSE_NO_EXTENSION``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["add_commands", "build_kernels", "main"]


def add_commands(subparsers: Any) -> None:
    """Register ``rnnfuse build-kernels``."""
    sub = subparsers.add_parser(
        "build-kernels",
        help="build the C++ kernels for this machine now (once per version)",
        description="Compile rnnfuse's C++ BPTT kernels into PyTorch's extension cache "
        "(TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions) so that no later "
        "call waits for the build; report where and how long.",
    )
    sub.set_defaults(handler=lambda args: build_kernels())


def build_kernels() -> int:
    """Build or load the kernels; print what happened; return the exit status."""
    from ._ext import ENV_DISABLE, specs
    from ._ext.build import build_folder, load_extension

    if os.environ.get(ENV_DISABLE, "") not in ("", "0"):
        print(
            f"rnnfuse build-kernels: {ENV_DISABLE} is set: the C++ kernels are disabled",
            file=sys.stderr,
        )
        return 2
    reasons = []
    for spec in specs():
        began = time.perf_counter()
        try:
            _, built = load_extension(spec)
        except Exception as exc:  # the next spec (no OpenMP), then the report
            text = str(exc).strip()
            reasons.append(f"{type(exc).__name__}: {text.splitlines()[-1] if text else ''}")
            continue
        seconds = time.perf_counter() - began
        where = build_folder(spec)
        what = (
            f"were built in {seconds:.0f} s"
            if built
            else f"are built already (loaded in {seconds:.1f} s)"
        )
        omp = (
            "with OpenMP" if "-fopenmp" in spec.cflags else "without OpenMP (the compiler has none)"
        )
        print(f"rnnfuse build-kernels: the C++ kernels {what}, {omp}: {where}")
        return 0
    print(
        f"rnnfuse build-kernels: error: the C++ kernels could not be built ({'; '.join(reasons)}); "
        "the pure-PyTorch kernels run instead (slower)",
        file=sys.stderr,
    )
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rnnfuse.kernels``."""
    parser = argparse.ArgumentParser(
        prog="python -m rnnfuse.kernels", description=__doc__.splitlines()[0]
    )
    parser.parse_args(argv)
    return build_kernels()
