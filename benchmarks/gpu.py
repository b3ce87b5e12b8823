"""The comparison of ``run.py`` on a CUDA device, against cuDNN (prepared; no GPU here).

    python benchmarks/gpu.py                      # on CUDA; a note and exit code 0 without one
    python benchmarks/gpu.py --device cpu --quick # the same script on the CPU (a smoke test)
    python benchmarks/gpu.py --out benchmarks/RESULTS-gpu.md

On CUDA, rnnfuse's fused path is cuDNN itself (``torch._VF``), a ragged batch is one packed
cuDNN call, and the BPTT kernels (GRU reset-before, peephole LSTM) run their loop of
PyTorch ops on the device.  Times are taken with ``torch.cuda.synchronize`` around each
run; peak memory is ``torch.cuda.max_memory_allocated`` over one forward+backward.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from cases import CASES, Case  # noqa: E402
from harness import compare, machine  # noqa: E402
from workloads import Size, Workload, make_inputs  # noqa: E402

GPU_CASES = ["lstm-2x256", "gru-reset-before-2x256", "peephole-lstm-2x256", "lstm-clips-proj-2x256",
             "lstm-512-256-128", "ragged-lstm-2x256", "ragged-lstm-2x256-b8", "ragged-vs-packed-lstm-2x256",
             "gru-2x256"]


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


def run_case(case: Case, size: Size, device: str, repeats: int) -> list[str]:
    """Table rows of one case: both modes, then peak memory."""
    if case.batch is not None:
        size = dataclasses.replace(size, batch=case.batch)
    x, lengths = make_inputs(size, device)
    cand, base = case.candidate(x, lengths, size), case.baseline(x, lengths, size)
    rows = []
    for mode in case.modes:
        fn = "forward" if mode == "fwd" else "forward_backward"
        pair = compare(getattr(cand, fn), getattr(base, fn), repeats=repeats, device=device)
        rows.append(f"| {case.title} | {case.baseline_name} | {mode} | {pair.a_ms:.2f} | {pair.b_ms:.2f} "
                    f"| {pair.ratio:.3f} [{pair.ratio_low:.3f}, {pair.ratio_high:.3f}] |")
    mem_a, mem_b = peak_mb(cand, device), peak_mb(base, device)
    if mem_a is not None and mem_b is not None:
        rows.append(f"| {case.title} | {case.baseline_name} | peak MiB | {mem_a:.1f} | {mem_b:.1f} "
                    f"| {mem_a / max(mem_b, 1e-9):.3f} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="rnnfuse against cuDNN on a CUDA device")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 3 pairs: a smoke test")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("benchmarks/gpu.py: no CUDA device here (torch.cuda.is_available() is False), so there is no "
              "cuDNN to compare against; nothing was measured.  Run it on a GPU machine, or with "
              "--device cpu to exercise the script on the CPU.")
        return 0
    size = Size(8, 12, 16, shrink=16) if args.quick else Size(64, 100, 128)
    repeats = args.repeats or (3 if args.quick else 15)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else machine()["cpu"]
    lines = [f"# rnnfuse on {args.device} ({name}), torch {torch.__version__}, cuDNN "
             f"{torch.backends.cudnn.version() if args.device.startswith('cuda') else 'n/a'}", "",
             f"batch {size.batch}, {size.steps} steps, {size.features} features; ratio = rnnfuse / baseline", "",
             "| case | baseline | mode | rnnfuse ms | baseline ms | ratio [quartiles] |",
             "|---|---|---|---|---|---|"]
    for case in CASES:
        if case.name in GPU_CASES:
            lines += run_case(case, size, args.device, repeats)
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
