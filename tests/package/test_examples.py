"""The seed programs ported to rnnfuse.tf1 (examples/) run and print the right shapes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[2] / "examples"
NAMES = ("multi_layer_lstm.py", "two_encoder_fusion.py")

pytestmark = pytest.mark.slow  # two Python processes, each importing torch


@pytest.fixture(scope="module")
def printed() -> dict[str, list[str]]:
    """Run both examples as subprocesses, at the same time (each mostly waits on imports)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in NAMES
    }
    lines = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{name} failed:\n{err}"
        lines[name] = out.splitlines()
    return lines


def test_multi_layer_lstm(printed):
    lines = printed["multi_layer_lstm.py"]
    # time-major [3, 5, 6]: 3 steps of a batch of 5; two BasicLSTMCell(20) layers
    assert lines[:6] == [
        "output: Tensor[3, 5, 20]",
        "state: (LSTMState(c=[5, 20], h=[5, 20]), LSTMState(c=[5, 20], h=[5, 20]))",
        "rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel [26, 80]",
        "rnn/multi_rnn_cell/cell_0/basic_lstm_cell/bias [80]",
        "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel [40, 80]",
        "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/bias [80]",
    ]
    assert lines[6].startswith(
        "unit3 error: cells[0] and cells[1] are the same BasicLSTMCell object"
    )
    assert lines[6].endswith("MultiRNNCell([BasicLSTMCell(num_units=20) for _ in range(2)])")
    assert len(lines) == 7


def test_two_encoder_fusion(printed):
    assert printed["two_encoder_fusion.py"] == [
        "concat output",
        "encoder_output_local: Tensor[3, 5, 20]",
        "encoder_outputs: Tensor[3, 5, 40]",
        "concat state",
        "encoder_state_local: (Tensor[3, 20], Tensor[3, 20])",
        "encoder_state_global: (Tensor[3, 20], Tensor[3, 20])",
        "encoder_states: (Tensor[3, 40], Tensor[3, 40])",
        "same as rnnfuse.concat_states: True",
        "variables: encoder1/rnn/multi_rnn_cell/cell_0/gru_cell/candidate/bias ... "
        "encoder2/rnn/multi_rnn_cell/cell_1/gru_cell/gates/kernel",
    ]
