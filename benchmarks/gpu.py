"""The comparison of ``run.py`` on a CUDA device, against cuDNN: one short script (a few minutes).

    python benchmarks/gpu.py                      # on CUDA; a note and exit code 0 without one
    python benchmarks/gpu.py --device cpu --quick # the same script on the CPU (a smoke test)
    python benchmarks/gpu.py --out benchmarks/results/gpu-NAME.md

For every case it prints:

* the ratio rnnfuse / baseline per mode (``nn.LSTM``/``nn.GRU``, i.e. cuDNN, for the
  standard layers and for the variants cuDNN has no kernel for: peepholes, clips with a
  projection, reset-before GRU, ragged batches), from alternating runs synchronised with
  ``torch.cuda.synchronize``;
* the peak memory of one forward+backward (``torch.cuda.max_memory_allocated``) of both;
* the CUDA kernels launched per time step and layer by rnnfuse's forward (``torch.profiler``);
* whether the BPTT variants' steps run compiled (one kernel per elementwise part,
  ``rnnfuse.kernels.compiled_steps``: on CUDA with Triton; ``RNNFUSE_NO_COMPILED_STEPS=1``
  runs the plain operations, to compare launches and times);
* whether cuDNN copied rnnfuse's weights (its "not part of single contiguous chunk of
  memory" warning, captured): each cell keeps its weights in one flat buffer in cuDNN's
  layout (``rnnfuse.cells.flat``), so there should be none;
* the check of rnnfuse's numbers on the device against the CPU path in float64 (outputs
  and every gradient, same weights and inputs, small sizes), with TF32 off for the check.

Exit code 1 when a check fails (numbers off, or weights copied), 0 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from cases import CASES, Case
from harness import compare, machine
from workloads import Size, Workload, make_inputs

from rnnfuse.kernels.compiled_steps import compiles_steps

GPU_CASES = [
    "lstm-2x256",
    "gru-2x256",
    "gru-reset-before-2x256",
    "peephole-lstm-2x256",
    "lstm-clips-proj-2x256",
    "lstm-512-256-128",
    "ragged-lstm-2x256",
    "ragged-lstm-2x256-b8",
    "ragged-vs-packed-lstm-2x256",
]
COPY_WARNING = "not part of single contiguous chunk of memory"
CHECK_SIZE = Size(5, 9, 16, shrink=16)  # the float64 check against the CPU: small, every path taken
CHECK_TOLERANCE = 1e-4  # float32 on the device vs float64 on the CPU, relative to the largest value


@dataclasses.dataclass
class Outcome:
    """The rows of one case and what its checks found."""

    rows: list[str]
    copies: int
    error: float


def weight_copies(fn: Callable[[], object]) -> int:
    """Run ``fn``; the number of cuDNN warnings that it copied an RNN's weights."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fn()
    return sum(COPY_WARNING in str(w.message) for w in seen)


def peak_mb(work: Workload, device: str) -> float | None:
    """Peak allocated memory of one forward+backward (CUDA only), above what was allocated."""
    if not device.startswith("cuda"):
        return None
    work.forward_backward()
    work.module.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    work.forward_backward()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def launches_per_step(work: Workload, device: str, steps: int, layers: int) -> float | None:
    """CUDA kernels launched by one forward, per time step and layer (CUDA only)."""
    if not device.startswith("cuda"):
        return None
    from torch.profiler import ProfilerActivity, profile

    work.forward()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        work.forward()
        torch.cuda.synchronize()
    kernels = sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
    return kernels / (steps * layers)


def _built(
    builder: Callable, x: torch.Tensor, lengths: torch.Tensor, size: Size, seed: int
) -> Workload:
    torch.manual_seed(seed)  # the same initial weights on every device
    return builder(x, lengths, size)


def check_numbers(case: Case, device: str) -> float:
    """Largest difference of rnnfuse's loss, input gradient and weight gradients on
    ``device`` (float32) from the CPU path in float64, relative to the largest value."""
    size = (
        CHECK_SIZE
        if case.batch is None
        else dataclasses.replace(CHECK_SIZE, batch=min(case.batch, 8))
    )
    x_cpu, lengths = make_inputs(size, "cpu", seed=1)
    ref = _built(case.candidate, x_cpu.detach().double().requires_grad_(), lengths, size, seed=2)
    ref.module.double()
    dev = _built(
        case.candidate, x_cpu.detach().to(device).requires_grad_(), lengths.to(device), size, seed=2
    )
    results = []
    for work in (ref, dev):
        work.module.train()
        loss = work.loss()
        loss.backward()
        grads = [p.grad for p in work.module.parameters()]
        results.append([loss.detach().reshape(1), work.x.grad, *grads])
    worst = 0.0
    for a, b in zip(*results, strict=True):
        scale = float(a.abs().max()) or 1.0
        worst = max(worst, float((a - b.detach().double().cpu()).abs().max()) / scale)
    return worst


def _without_tf32(fn: Callable[[], float]) -> float:
    """``fn()`` with TF32 off in matrix products and cuDNN (restored after)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return fn()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_case(case: Case, size: Size, device: str, repeats: int) -> Outcome:
    """Table rows of one case: both modes, then peak memory and kernel launches."""
    if case.batch is not None:
        size = dataclasses.replace(size, batch=case.batch)
    x, lengths = make_inputs(size, device)
    cand, base = case.candidate(x, lengths, size), case.baseline(x, lengths, size)
    rows, copies = [], 0
    for mode in case.modes:
        fn = "forward" if mode == "fwd" else "forward_backward"
        copies += weight_copies(getattr(cand, fn))
        pair = compare(getattr(cand, fn), getattr(base, fn), repeats=repeats, device=device)
        rows.append(
            f"| {case.title} | {case.baseline_name} | {mode} | {pair.a_ms:.2f} | {pair.b_ms:.2f} "
            f"| {pair.ratio:.3f} [{pair.ratio_low:.3f}, {pair.ratio_high:.3f}] |"
        )
    mem_a, mem_b = peak_mb(cand, device), peak_mb(base, device)
    if mem_a is not None and mem_b is not None:
        rows.append(
            f"| {case.title} | {case.baseline_name} | peak MiB | {mem_a:.1f} | {mem_b:.1f} "
            f"| {mem_a / max(mem_b, 1e-9):.3f} |"
        )
    launches = launches_per_step(cand, device, size.steps, len(case.sizes))
    if launches is not None:
        rows.append(
            f"| {case.title} | | CUDA kernels per step and layer (fwd) | {launches:.1f} | | |"
        )
    error = _without_tf32(lambda: check_numbers(case, device))
    verdict = "ok" if error <= CHECK_TOLERANCE else "FAILED"
    rows.append(
        f"| {case.title} | CPU float64 | numbers: {verdict}, largest relative difference "
        f"{error:.1e}; weight copies {copies} | | | |"
    )
    return Outcome(rows, copies, error)


def _header(device: str, size: Size) -> list[str]:
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(device) if cuda else machine()["cpu"]
    tf32 = (
        f", TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 "
        f"{torch.backends.cudnn.allow_tf32}"
        if cuda
        else ""
    )
    tf32 += f", BPTT steps compiled: {'yes' if compiles_steps(torch.device(device).type) else 'no'}"
    return [
        f"# rnnfuse on {device} ({name}), torch {torch.__version__}, cuDNN "
        f"{torch.backends.cudnn.version() if cuda else 'n/a'}{tf32}",
        "",
        f"batch {size.batch}, {size.steps} steps, {size.features} features; ratio = rnnfuse / "
        "baseline (median of alternating pairs [quartiles]); numbers checked at batch "
        f"{CHECK_SIZE.batch}, {CHECK_SIZE.steps} steps against the CPU path in float64 (tolerance "
        f"{CHECK_TOLERANCE:g})",
        "",
        "| case | baseline | mode | rnnfuse ms | baseline ms | ratio [quartiles] |",
        "|---|---|---|---|---|---|",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="rnnfuse against cuDNN on a CUDA device")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 pairs: a smoke test")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--cases", nargs="*", default=GPU_CASES, help="case names of cases.py")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False), so there "
            "is no cuDNN to compare against; nothing was measured.  Run it on a GPU machine, or "
            "with --device cpu to exercise the script on the CPU."
        )
        return 0
    size = Size(8, 12, 16, shrink=16) if args.quick else Size(64, 100, 128)
    repeats = args.repeats or (3 if args.quick else 15)
    lines, failed, started = _header(args.device, size), [], time.perf_counter()
    for case in CASES:
        if case.name not in args.cases:
            continue
        outcome = run_case(case, size, args.device, repeats)
        lines += outcome.rows
        print("\n".join(outcome.rows), flush=True)
        if outcome.copies or outcome.error > CHECK_TOLERANCE:
            failed.append(case.name)
    lines += [
        "",
        f"{time.perf_counter() - started:.0f} s; checks failed: {', '.join(failed) or 'none'}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
