"""rnnfuse benchmarks: one command runs them all and writes benchmarks/results/<cpu-model>.md.

    python benchmarks/run.py                  # the full suite, 2 threads (about 10 minutes)
    python benchmarks/run.py --quick          # tiny sizes, a smoke test (seconds)
    python benchmarks/run.py --tf-python PATH_TO_A_TF_VENV/bin/python   # add TF1 and Keras (TF)
    python benchmarks/run.py --cases lstm-2x256 ragged-lstm-2x256 --no-memory

Ratios are measured side by side in this process (``harness.compare``); peak memory in a
fresh process per measurement (``memory.py``); TensorFlow and Keras in their own processes
(``external.py``), reported as absolute times beside the PyTorch ones of this session.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from cases import CASES, MEMORY_CASES, Case  # noqa: E402
from harness import compare, cpu_file_name, load_average, machine, sgemm_peak_gflops  # noqa: E402
from report import write_report  # noqa: E402
from workloads import Size, layer_flops, make_inputs  # noqa: E402

FULL = Size(64, 100, 128)
QUICK = Size(8, 12, 16, shrink=16)


def _extension_note() -> str:
    """Whether the BPTT kernels run compiled, and what building (or loading) them took."""
    from rnnfuse.kernels import _ext

    if not _ext.available():
        return "not available (pure-PyTorch BPTT loop)"
    return f"compiled C++ loop (build or load: {_ext.build_seconds():.1f} s in this process)"


def _size_args(size: Size) -> list[str]:
    return [
        "--batch",
        str(size.batch),
        "--steps",
        str(size.steps),
        "--features",
        str(size.features),
        "--shrink",
        str(size.shrink),
    ]


def time_case(case: Case, size: Size, repeats: int, warmup: int) -> list[dict]:
    """Both modes of one case: times, median ratio and its quartiles, GFLOP/s."""
    if case.batch is not None:
        size = dataclasses.replace(size, batch=case.batch)
    x, lengths = make_inputs(size, "cpu")
    cand, base = case.candidate(x, lengths, size), case.baseline(x, lengths, size)
    rows = []
    for mode in case.modes:
        fn = "forward" if mode == "fwd" else "forward_backward"
        pair = compare(getattr(cand, fn), getattr(base, fn), repeats=repeats, warmup=warmup)
        tokens_all = size.batch * size.steps
        tokens = int(lengths.sum()) if case.ragged else tokens_all
        proj = None if case.proj is None else max(2, case.proj // size.shrink)
        flops = layer_flops(
            case.kind, size.features, size.hidden(case.sizes), tokens, mode != "fwd", proj
        )
        rows.append(
            {
                "case": case.name,
                "title": case.title,
                "candidate": case.candidate_name,
                "baseline": case.baseline_name,
                "mode": mode,
                "a_ms": pair.a_ms,
                "b_ms": pair.b_ms,
                "ratio": pair.ratio,
                "low": pair.ratio_low,
                "high": pair.ratio_high,
                "best": pair.best_ratio,
                "gflops": flops / pair.a_ms / 1e6,
                "bar": case.bars.get(mode),
                "goal": case.goals.get(mode),
            }
        )
        print(
            f"  {case.name:32s} {mode:8s} {pair.a_ms:9.2f} ms vs {pair.b_ms:9.2f} ms  ratio "
            f"{pair.ratio:.3f} [{pair.ratio_low:.3f}, {pair.ratio_high:.3f}], best-of "
            f"{pair.best_ratio:.3f}",
            flush=True,
        )
    return rows


def measure_memory(size: Size, threads: int, names: set[str] | None) -> list[dict]:
    """Peak extra memory of forward+backward, candidate and baseline, each in a fresh process."""
    rows = []
    for name, bar in MEMORY_CASES:
        if names and name not in names:
            continue
        peaks = {}
        for which in ("candidate", "baseline"):
            cmd = [
                sys.executable,
                str(HERE / "memory.py"),
                name,
                which,
                "--threads",
                str(threads),
                *_size_args(size),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            peaks[which] = json.loads(out.strip().splitlines()[-1])["peak_mb"]
        rows.append(
            {
                "case": name,
                "candidate_mb": peaks["candidate"],
                "baseline_mb": peaks["baseline"],
                "ratio": peaks["candidate"] / max(peaks["baseline"], 1e-9),
                "bar": bar,
            }
        )
        print(
            f"  memory {name:32s} {peaks['candidate']:8.1f} MiB vs {peaks['baseline']:8.1f} MiB",
            flush=True,
        )
    return rows


def run_external(
    python: str, framework: str, env: dict[str, str], size: Size, threads: int
) -> dict | None:
    """Run ``external.py`` with another interpreter; ``None`` (and a note) if it fails."""
    cmd = [
        python,
        str(HERE / "external.py"),
        framework,
        "--threads",
        str(threads),
        *_size_args(size),
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env={**os.environ, **env}, timeout=1800
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"  {framework} with {python}: skipped ({exc})", flush=True)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        print(
            f"  {framework} with {python}: failed, rc={done.returncode}: {done.stderr[-500:]}",
            flush=True,
        )
        return None
    result = json.loads(lines[-1])
    print(
        f"  {result['framework']} {result['version']}: {len(result['results'])} timings", flush=True
    )
    return result


def externals(args: argparse.Namespace, size: Size) -> list[dict]:
    found = []
    if not args.no_keras and importlib.util.find_spec("keras") is not None:
        found.append(
            run_external(sys.executable, "keras", {"KERAS_BACKEND": "torch"}, size, args.threads)
        )
    if args.tf_python:
        found.append(
            run_external(args.tf_python, "tf1", {"TF_USE_LEGACY_KERAS": "1"}, size, args.threads)
        )
        found.append(
            run_external(
                args.tf_python, "keras", {"KERAS_BACKEND": "tensorflow"}, size, args.threads
            )
        )
    return [r for r in found if r is not None]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="rnnfuse benchmarks (writes benchmarks/results/<cpu-model>.md)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few repeats: a smoke test"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed pairs per comparison (default 9)"
    )
    parser.add_argument("--cases", nargs="*", help="only these cases (names in cases.py)")
    parser.add_argument(
        "--tf-python", help="an interpreter with TensorFlow (and tf_keras) for TF1 and Keras"
    )
    parser.add_argument("--no-keras", action="store_true", help="skip Keras 3 on the torch backend")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory measurements"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="where to write the report (default benchmarks/results/<cpu-model>.md)",
    )
    return parser.parse_args(argv)


def shown_command(argv: list[str]) -> str:
    """The command line for the report, with paths of this machine replaced by placeholders
    (``--tf-python PATH_TO_A_TF_VENV/bin/python``, ``--out FILE``)."""
    shown, placeholders = [], {"--tf-python": "PATH_TO_A_TF_VENV/bin/python", "--out": "FILE"}
    for index, arg in enumerate(argv):
        flag, eq, _ = arg.partition("=")
        if eq and flag in placeholders:
            arg = f"{flag}={placeholders[flag]}"
        elif index and argv[index - 1] in placeholders:
            arg = placeholders[argv[index - 1]]
        shown.append(arg)
    return " ".join(["python", "benchmarks/run.py", *shown])


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    size = QUICK if args.quick else FULL
    repeats = args.repeats or (3 if args.quick else 9)
    names = set(args.cases) if args.cases else None
    info = {
        "machine": machine(),
        "load_before": load_average(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": shown_command(argv if argv is not None else sys.argv[1:]),
        "size": size,
        "repeats": repeats,
    }
    info["sgemm_gflops"] = sgemm_peak_gflops(repeats=3 if args.quick else 7)
    print(f"sgemm peak {info['sgemm_gflops']:.1f} GFLOP/s, load {info['load_before']}", flush=True)
    info["extension"] = _extension_note()
    rows = []
    for case in CASES:
        if names is None or case.name in names:
            rows += time_case(case, size, repeats, 1 if args.quick else 2)
    memory = [] if args.no_memory else measure_memory(size, args.threads, names)
    ext = externals(args, size)
    # the peak again after the cases (a shared machine): the better of the two counts
    info["sgemm_gflops"] = max(
        info["sgemm_gflops"], sgemm_peak_gflops(repeats=3 if args.quick else 7)
    )
    info["load_after"] = load_average()
    out = (
        Path(args.out)
        if args.out
        else HERE / "results" / f"{cpu_file_name(info['machine']['cpu'])}.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_report(out, info, rows, memory, ext)
    print(f"wrote {out}; load after {info['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
