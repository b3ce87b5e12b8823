"""The benchmark scripts (benchmarks/): they compile, and the GPU script falls back
cleanly and checks its numbers on the CPU."""

from __future__ import annotations

import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_scripts_compile():
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        py_compile.compile(str(path), doraise=True)


@pytest.mark.slow
def test_gpu_script_falls_back_cleanly():
    script = str(ROOT / "benchmarks" / "gpu.py")
    if not torch.cuda.is_available():
        done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "no CUDA device" in done.stdout
    cases = ["lstm-2x256", "peephole-lstm-2x256", "gru-reset-before-2x256", "ragged-lstm-2x256-b8"]
    done = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--quick", "--repeats", "1", "--cases", *cases],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "| LSTM [256, 256] | nn.LSTM(num_layers=2) | fwd+bwd |" in done.stdout
    # each case's numbers checked against the float64 CPU path, and no weight copies seen
    assert done.stdout.count("numbers: ok") == 2 * len(cases)  # the live row and the final table
    assert "checks failed: none" in done.stdout
