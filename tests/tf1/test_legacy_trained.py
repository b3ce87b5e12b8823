"""Trained TF1 checkpoints (optimizer slots, global_step, EMA shadows) against TensorFlow.

Fixtures: tests/fixtures/legacy/trained_* (see that directory's README for how TF wrote
them).  The RNN must load by default, skipping what training left; ``use_ema=True`` must give
what TF computed after restoring ``ema.variables_to_restore()``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnfuse import tf1
from rnnfuse.cli import main
from rnnfuse.tf1.checkpoint import read_checkpoint
from rnnfuse.tf1.skip import EMAError, split

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
TRAINED = ["trained_adam", "trained_momentum", "trained_rmsprop", "trained_ema"]


def io(case: str) -> dict[str, np.ndarray]:
    with np.load(LEGACY / case / "io.npz") as data:
        return {k: data[k] for k in data.files}


def state_arrays(state, prefix: str = "state") -> dict[str, np.ndarray]:
    """``{io key: array}`` of a per-layer state tuple, as the fixtures flatten it."""
    out = {}
    for k, s in enumerate(state):
        if isinstance(s, tf1.LSTMStateTuple):
            out[f"{prefix}/{k}/c"], out[f"{prefix}/{k}/h"] = s.c.numpy(), s.h.numpy()
        else:
            out[f"{prefix}/{k}"] = s.numpy()
    return out


def assert_close(
    got: dict[str, np.ndarray], want: dict[str, np.ndarray], tol: float = 1e-6
) -> float:
    worst = 0.0
    for key, value in got.items():
        assert value.shape == want[key].shape, key
        worst = max(worst, float(np.abs(value - want[key]).max()))
    assert worst <= tol, worst
    return worst


def head(case: str, h: torch.Tensor, ema: bool = False) -> np.ndarray:
    v = read_checkpoint(LEGACY / case / "model")
    sfx = "/ExponentialMovingAverage" if ema else ""
    return h.numpy() @ v["head/kernel" + sfx] + v["head/bias" + sfx]


@pytest.mark.parametrize("case", TRAINED)
def test_trained_checkpoint_loads_by_default(case):
    data = io(case)
    stack = tf1.load_stack(LEGACY / case / "model", "rnn")
    with torch.no_grad():
        out, state = stack(torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"]))
    got = {"outputs": out.numpy(), **state_arrays(state)}
    assert_close(got, data)
    top = state[-1].h if isinstance(state[-1], tf1.LSTMStateTuple) else state[-1]
    assert np.abs(head(case, top) - data["prediction"]).max() <= 1e-6


def test_ema_shadows_give_tf_numbers():
    data = io("trained_ema")
    prefix = LEGACY / "trained_ema" / "model"
    stack = tf1.load_stack(prefix, "rnn", use_ema=True)
    with torch.no_grad():
        out, state = stack(torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"]))
    assert_close({"ema/outputs": out.numpy(), **state_arrays(state, "ema/state")}, data)
    assert np.abs(head("trained_ema", state[-1].h, ema=True) - data["ema/prediction"]).max() <= 1e-6
    # the raw values differ from the shadows (else the test would prove nothing)
    assert np.abs(data["outputs"] - data["ema/outputs"]).max() > 1e-4


def test_ema_mapping_is_tfs_own():
    info = json.loads((LEGACY / "trained_ema" / "case.json").read_text())
    variables = read_checkpoint(LEGACY / "trained_ema" / "model")
    kept, skipped = split(variables, use_ema=True, scope="rnn")
    for shadow, var in info["ema"]["variables_to_restore"].items():
        assert np.array_equal(kept[var], variables[shadow])
    assert sorted(skipped.raw) == sorted(info["ema"]["variables_to_restore"].values())


def test_restore_facade_skips_slots_and_reads_ema():
    data = io("trained_ema")
    prefix = LEGACY / "trained_ema" / "model"
    for use_ema, key in ((False, ""), (True, "ema/")):
        cell = tf1.MultiRNNCell([tf1.BasicLSTMCell(4), tf1.BasicLSTMCell(3)])
        tf1.restore(cell, prefix, "rnn", use_ema=use_ema)
        with torch.no_grad():
            out, _ = tf1.dynamic_rnn(
                cell,
                torch.from_numpy(data["x"]),
                sequence_length=torch.from_numpy(data["sequence_length"]),
            )
        assert np.abs(out.numpy() - data[key + "outputs"]).max() <= 1e-6


def test_ema_refused_without_shadows():
    with pytest.raises(EMAError, match="use_ema"):
        tf1.load_stack(LEGACY / "trained_adam" / "model", "rnn", use_ema=True)


def test_skipped_names_are_logged(caplog):
    with caplog.at_level(logging.INFO, logger="rnnfuse.tf1"):
        tf1.load_stack(LEGACY / "trained_rmsprop" / "model", "rnn")
    assert "RMSProp slots for 6 variables" in caplog.text and "global_step" in caplog.text


def test_unknown_leftover_is_still_an_error_naming_ignore():
    variables = dict(read_checkpoint(LEGACY / "trained_adam" / "model"))
    extra = "rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel/MySlot"
    variables[extra] = variables["rnn/multi_rnn_cell/cell_0/basic_lstm_cell/kernel"]
    with pytest.raises(tf1.TF1VariableError, match="ignore=") as err:
        tf1.load_stack(variables, "rnn")
    assert extra in str(err.value)
    tf1.load_stack(variables, "rnn", ignore=["*/MySlot"])


def test_slot_not_child_of_a_variable_is_not_skipped():
    # "Adam" as a name whose parent is not a variable is a model variable, not a slot
    kept, skipped = split({"rnn/Adam": (3,), "x/kernel": (2,)})
    assert set(kept) == {"rnn/Adam", "x/kernel"} and not skipped


def test_inspect_and_convert_cli(tmp_path, capsys):
    prefix = str(LEGACY / "trained_ema" / "model")
    assert main(["inspect", prefix]) == 0
    text = capsys.readouterr().out
    assert "Adam slots for 6 variables, beta1_power, beta2_power, global_step" in text
    assert "ExponentialMovingAverage shadows for 6 variables" in text
    out = tmp_path / "ema.safetensors"
    assert main(["convert", prefix, "--ema", "--out", str(out)]) == 0
    assert "used in place of the raw values" in capsys.readouterr().out
    from rnnfuse.io import load

    stack = load(out)
    data = io("trained_ema")
    with torch.no_grad():
        got, _ = stack(torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"]))
    assert np.abs(got.numpy() - data["ema/outputs"]).max() <= 1e-6
