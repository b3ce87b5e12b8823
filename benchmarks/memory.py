"""Peak memory of one forward+backward, measured in a fresh process per measurement.

Method (Linux): build the workload, run it once (lazy initialisation, kernel caches), free
its gradients, return freed heap pages to the OS (``malloc_trim``), reset the process's
resident-set high-water mark (``echo 5 > /proc/self/clear_refs``), note the resident set,
run forward+backward once more and read the high-water mark (``VmHWM``).  The difference
is the peak *extra* memory of a training step: activations kept for the backward,
temporaries, gradients, and whatever the kernels allocate outside PyTorch's allocator
(oneDNN workspaces), which a tensor-level count would miss.  A fresh process keeps one
measurement's allocator state out of the next.

    python benchmarks/memory.py CASE candidate|baseline [--batch ...]   # prints JSON
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from cases import case_by_name
from workloads import Size, make_inputs


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _trim() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def peak_extra_mb(case_name: str, which: str, size: Size) -> float:
    """Peak extra resident memory (MiB) of one forward+backward of the case's workload."""
    case = case_by_name(case_name)
    x, lengths = make_inputs(size, "cpu")
    build = case.candidate if which == "candidate" else case.baseline
    work = build(x, lengths, size)
    work.forward_backward()
    work.module.zero_grad(set_to_none=True)
    x.grad = None
    _trim()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _status_kb("VmRSS")
    work.forward_backward()
    return (_status_kb("VmHWM") - base) / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="peak memory of one forward+backward")
    parser.add_argument("case")
    parser.add_argument("which", choices=["candidate", "baseline"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--shrink", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    size = Size(args.batch, args.steps, args.features, args.shrink)
    json.dump(
        {
            "case": args.case,
            "which": args.which,
            "peak_mb": peak_extra_mb(args.case, args.which, size),
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
