"""Measuring side by side: alternating runs in one process, the median of per-pair ratios.

The CPU of a shared machine is noisy: another process can slow one run by 2x.  Two
implementations timed far apart see different loads; timed in alternation (a b, b a, a b,
...), each pair sees nearly the same load, so the ratio of a pair is much steadier than
either time.  We report the median of those ratios, beside the median absolute times.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Pair", "compare", "time_one", "sgemm_peak_gflops", "machine", "load_average"]


@dataclass
class Pair:
    """Result of :func:`compare`: median times (ms) and the median ratio ``a / b``."""

    a_ms: float
    b_ms: float
    ratio: float
    ratio_low: float  # 25th percentile of the per-pair ratios
    ratio_high: float  # 75th percentile
    repeats: int


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def compare(
    a: Callable[[], object],
    b: Callable[[], object],
    repeats: int = 9,
    warmup: int = 2,
    device: str = "cpu",
) -> Pair:
    """Time ``a`` and ``b`` alternately (the order flips every pair) ``repeats`` times."""
    for _ in range(warmup):
        a()
        b()
    ta, tb, ratios = [], [], []
    for i in range(repeats):
        if i % 2 == 0:
            x, y = _timed(a, device), _timed(b, device)
        else:
            y, x = _timed(b, device), _timed(a, device)
        ta.append(x)
        tb.append(y)
        ratios.append(x / y)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return Pair(
        a_ms=statistics.median(ta) * 1e3,
        b_ms=statistics.median(tb) * 1e3,
        ratio=statistics.median(ratios),
        ratio_low=q[0],
        ratio_high=q[2],
        repeats=repeats,
    )


def time_one(fn: Callable[[], object], repeats: int = 9, warmup: int = 2, device: str = "cpu") -> float:
    """Median time of ``fn`` in ms (for absolute numbers only; ratios use :func:`compare`)."""
    for _ in range(warmup):
        fn()
    return statistics.median(_timed(fn, device) for _ in range(repeats)) * 1e3


def sgemm_peak_gflops(size: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """The machine's float32 matrix-multiply rate: best of ``repeats`` large ``torch.mm``."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b), device) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def load_average() -> str:
    """``uptime``'s load averages (1, 5, 15 minutes), for the record."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "onednn": str(torch.backends.mkldnn.is_available()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
