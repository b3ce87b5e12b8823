"""TF1 checkpoints as found in public repositories, against the numbers TF computed
(tests/fixtures/legacy/tf1_*, written by ``make_tf2_fixtures.py``): optimizer slots under
the optimizer's own scope, cells built with ``name=``, per-layer forget biases and a
hand-stepped decoder beside its output layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from legacy_cases import LEGACY, close, io

from rnnfuse import LSTMState, load
from rnnfuse.cli import main
from rnnfuse.tf1 import TF1VariableError, load_stack

NAMED = LEGACY / "tf1_named_cells" / "model"


def state_close(state, data: dict[str, np.ndarray], prefix: str) -> None:
    for k, layer in enumerate(state):
        if isinstance(layer, LSTMState):
            close(layer.c, data[f"{prefix}/{k}/c"]), close(layer.h, data[f"{prefix}/{k}/h"])
        else:
            close(layer, data[f"{prefix}/{k}"])


@pytest.mark.parametrize(
    "case, scope, optimizer_scope",
    [
        ("tf1_optimize_loss", "rnn", "OptimizeLoss"),
        ("tf1_train_step_scope", "rnn", "train_step"),
        ("tf1_doubled_scope", "tagger/rnn", "tagger"),
    ],
)
def test_slots_under_the_optimizers_scope_are_skipped(case, scope, optimizer_scope, capsys):
    data = io(case)
    stack = load_stack(LEGACY / case / "model", scope)
    with torch.no_grad():
        out, state = stack(torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"]))
    close(out, data["outputs"])
    state_close(state, data, "state")
    assert main(["inspect", str(LEGACY / case / "model")]) == 0
    text = capsys.readouterr().out
    assert (
        f"under the optimizer scope ['{optimizer_scope}']" in text and "cannot be read" not in text
    )
    assert f"{scope}: dynamic_rnn, MultiRNNCell of 2 cells" in text
    if case == "tf1_optimize_loss":
        assert "OptimizeLoss/learning_rate" in text.split("skipped (not model weights):")[1]


def test_named_cells_with_a_forget_bias_per_layer():
    data = io("tf1_named_cells")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    stack = load_stack(NAMED, "rnn", forget_bias=[0.5, 1.0])
    assert [type(c).__name__ for c in stack.layers] == ["LSTMCell", "LSTMCell"]
    assert [c.forget_bias for c in stack.layers] == [0.5, 1.0]
    with torch.no_grad():
        out, state = stack(x, lengths)
        wrong, _ = load_stack(NAMED, "rnn")(x, lengths)  # forget_bias 1.0 for both
    close(out, data["outputs"]), state_close(state, data, "state")
    assert float((wrong - out).abs().max()) > 1e-3
    with torch.no_grad():
        out, (single,) = load_stack(NAMED, "single")(x)
    close(out, data["single/outputs"])
    close(single.c, data["single/state/c"]), close(single.h, data["single/state/h"])


def test_ambiguous_named_cell_needs_cell_types():
    data = io("tf1_named_cells")
    with pytest.raises(
        TF1VariableError,
        match=r"cell_types: the cell at plain_rnn/plain .* fit both an "
        r"LSTM of 1 units and a BasicRNNCell of 4 units; pass cell_types=\{'plain'",
    ):
        load_stack(NAMED, "plain_rnn")
    stack = load_stack(NAMED, "plain_rnn", cell_types={"plain": "BasicRNNCell"})
    with torch.no_grad():
        out, (state,) = stack(torch.from_numpy(data["x"]))
    close(out, data["plain/outputs"]), close(state, data["plain/state"])
    with pytest.raises(ValueError, match=r"cell_types: expected TF class names"):
        load_stack(NAMED, "plain_rnn", cell_types={"plain": "LSTM"})


def test_hand_stepped_decoder_loads_with_the_ignore_inspect_prints(capsys):
    data = io("tf1_named_cells")
    with pytest.raises(TF1VariableError, match="decoder/output_projection/kernel") as err:
        load_stack(NAMED, "decoder")
    assert sorted(err.value.unexpected) == [
        "decoder/output_projection/bias",
        "decoder/output_projection/kernel",
    ]
    assert main(["inspect", str(NAMED)]) == 0
    text = capsys.readouterr().out
    assert "load_stack(prefix, 'decoder', ignore=['decoder/output_projection/*'])" in text
    assert "--ignore 'decoder/output_projection/*'" in text
    stack = load_stack(NAMED, "decoder", ignore=["decoder/output_projection/*"])
    start = (LSTMState(torch.from_numpy(data["state/1/c"]), torch.from_numpy(data["state/1/h"])),)
    with torch.no_grad():
        out, (state,) = stack(torch.from_numpy(data["decoder/x"]), initial_state=start)
    close(out, data["decoder/outputs"])
    close(state.c, data["decoder/state/c"]), close(state.h, data["decoder/state/h"])


def test_convert_cli_forget_bias_per_layer_and_cell_type(tmp_path, capsys):
    data = io("tf1_named_cells")
    out = tmp_path / "rnn.safetensors"
    assert (
        main(
            ["convert", str(NAMED), "--scope", "rnn", "--forget-bias", "0.5,1.0", "--out", str(out)]
        )
        == 0
    )
    with torch.no_grad():
        got, _ = load(out)(torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"]))
    close(got, data["outputs"])
    assert (
        main(
            [
                "convert",
                str(NAMED),
                "--scope",
                "plain_rnn",
                "--cell-type",
                "plain=BasicRNNCell",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["convert", str(NAMED), "--scope", "plain_rnn", "--out", str(out)]) == 2
    assert "--cell-type plain=LSTMCell" in capsys.readouterr().err
    assert (
        main(["convert", str(NAMED), "--scope", "rnn", "--forget-bias", "0.5,x", "--out", str(out)])
        == 2
    )
    assert "--forget-bias: expected a number or comma-separated numbers" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value, error, match",
    [
        (
            [0.5],
            ValueError,
            r"forget_bias: expected a number or 2 numbers \(one per layer of 'rnn'",
        ),
        ([0.5, float("nan")], ValueError, "finite"),
        ("0.5", TypeError, "forget_bias: expected a number or a sequence"),
    ],
)
def test_forget_bias_sequence_is_checked(value, error, match):
    with pytest.raises(error, match=match):
        load_stack(NAMED, "rnn", forget_bias=value)
