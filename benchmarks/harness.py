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
from functools import partial

import torch

__all__ = [
    "Pair",
    "compare",
    "time_one",
    "sgemm_peak_gflops",
    "percent_of_peak",
    "machine",
    "load_average",
    "cpu_file_name",
]


@dataclass
class Pair:
    """Result of :func:`compare`: median times (ms) and the median ratio ``a / b``."""

    a_ms: float
    b_ms: float
    ratio: float
    ratio_low: float  # 25th percentile of the per-pair ratios
    ratio_high: float  # 75th percentile
    repeats: int
    best_ratio: float = float("nan")  # best a / best b: each side at its quietest moment


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
        best_ratio=min(ta) / min(tb),
    )


def time_one(
    fn: Callable[[], object], repeats: int = 9, warmup: int = 2, device: str = "cpu"
) -> float:
    """Median time of ``fn`` in ms (for absolute numbers only; ratios use :func:`compare`)."""
    for _ in range(warmup):
        fn()
    return statistics.median(_timed(fn, device) for _ in range(repeats)) * 1e3


PEAK_SHAPES = (
    (256, 256, 256),
    (384, 384, 384),
    (512, 512, 512),
    (768, 768, 768),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (64, 256, 1024),
    (6400, 256, 1024),
)
"""(m, k, n) products timed for the sgemm peak: squares of several sizes (a small one reaches
the peak inside one quiet moment of a shared machine, a large one amortises the packing)
and the shapes the kernels run (one step's recurrent product, one layer's input product)."""


def sgemm_peak_gflops(repeats: int = 7, device: str = "cpu", budget_s: float = 4.0) -> float:
    """The machine's float32 matrix-multiply rate, the best over :data:`PEAK_SHAPES`, each
    with ``torch.mm`` (MKL or OpenBLAS) and, on CPU, oneDNN's matmul (the library of
    PyTorch's fused RNN kernels; it may be the faster one, e.g. MKL on an AMD CPU): for each,
    the best of ``repeats`` runs (at most about ``budget_s`` seconds per shape)."""
    best = 0.0
    for m, k, n in PEAK_SHAPES:
        a = torch.randn(m, k, device=device)
        w = torch.randn(n, k, device=device)
        runs: list[Callable[[], object]] = [lambda a=a, w=w: torch.mm(a, w.t())]
        if device == "cpu" and torch.backends.mkldnn.is_available():
            a_dnn, w_dnn = a.to_mkldnn(), w.to_mkldnn()
            runs.append(partial(torch._C._nn.mkldnn_linear, a_dnn, w_dnn))
        for fn in runs:
            try:
                fn()
            except RuntimeError:  # a build without that matmul
                continue
            start, times = time.perf_counter(), []
            while len(times) < repeats and time.perf_counter() - start < budget_s / len(runs):
                times.append(_timed(fn, device))
            best = max(best, 2 * m * k * n / min(times) / 1e9)
    return best


def percent_of_peak(gflops: float, peak: float) -> str:
    """``gflops`` as a share of the measured ``peak``, never above 100 %: a rate above the
    peak means the peak measurement missed the machine's best moment (a shared CPU), so it
    says that instead of printing an impossible figure."""
    if peak <= 0:
        return "peak unknown"
    if gflops > peak:
        return "≥ the measured peak: peak under-measured"
    return f"{100 * gflops / peak:.0f} %"


def load_average() -> str:
    """``uptime``'s load averages (1, 5, 15 minutes), for the record."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def _capability() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except Exception:
        return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_file_name(cpu: str) -> str:
    """A file name for a CPU model: ``AMD EPYC 7B13`` -> ``amd-epyc-7b13``."""
    name = "".join(
        ch if ch.isalnum() else "-" for ch in cpu.lower().replace("(r)", "").replace("(tm)", "")
    )
    while "--" in name:
        name = name.replace("--", "-")
    return name.strip("-") or "unknown-cpu"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "capability": _capability(),
        "threads": str(torch.get_num_threads()),
        "onednn": str(torch.backends.mkldnn.is_available()),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
