"""Forward time of one stack: eager vs torch.compile vs onnxruntime, side by side in one run.

    python benchmarks/deploy.py [--sizes 256 256] [--steps 100] [--features 128] [--reps 20]

Ragged lengths (uniform in 1..T) go to all three; ratios are against eager.  Prints a
Markdown table and the CPU model.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

# `python benchmarks/deploy.py` puts benchmarks/ first on the path, where profile.py would
# shadow the standard library's profile module (torch.export imports it through cProfile);
# this script uses nothing from benchmarks/.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import torch

from rnnfuse import StackedRNN
from rnnfuse.export import export_onnx


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except Exception:
        return platform.processor() or "unknown"


def _time(fn, reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    stack = StackedRNN(args.features, args.sizes, cell="lstm").eval()
    batch, steps = torch.export.Dim("batch"), torch.export.Dim("time")
    example = (torch.randn(2, args.steps, args.features), torch.tensor([args.steps, 1]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "stack.onnx"
        export_onnx(stack, example, path, dynamic_shapes=({0: batch, 1: steps}, {0: batch}))
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options)
    compiled = torch.compile(stack, dynamic=True)
    print(
        f"CPU: {_cpu()}, {args.threads} threads; LSTM {args.sizes}, T={args.steps}, "
        f"F={args.features}, forward"
    )
    print("| batch | eager ms | compiled ms (ratio) | onnxruntime ms (ratio) | max diff ort |")
    print("|---|---|---|---|---|")
    for b in args.batches:
        x = torch.randn(b, args.steps, args.features)
        lengths = torch.randint(1, args.steps + 1, (b,))
        feeds = {
            session.get_inputs()[0].name: x.numpy(),
            session.get_inputs()[1].name: lengths.numpy(),
        }
        with torch.no_grad():
            eager = _time(partial(stack, x, lengths), args.reps)
            comp = _time(partial(compiled, x, lengths), args.reps)
            onnx = _time(partial(session.run, None, feeds), args.reps)
            diff = abs(session.run(None, feeds)[0] - stack(x, lengths)[0].numpy()).max()
        print(
            f"| {b} | {eager * 1e3:.2f} | {comp * 1e3:.2f} ({comp / eager:.2f}x) | "
            f"{onnx * 1e3:.2f} ({onnx / eager:.2f}x) | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
