"""rnnfuse.tf1, the TF1-style facade: TF's fixtures through dynamic_rnn + restore, and TF's API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from test_tf1_load import CASES, Case, compare, flatten, initial_state, load_case

from rnnfuse import tf1
from rnnfuse.tf1.checkpoint import read_checkpoint


def make_cell(spec: dict[str, Any]) -> Any:
    kind = spec["type"]
    if kind == "BasicLSTMCell":
        return tf1.BasicLSTMCell(spec["num_units"], forget_bias=spec["forget_bias"])
    if kind == "LSTMCell":
        return tf1.LSTMCell(
            spec["num_units"],
            use_peepholes=spec["use_peepholes"],
            cell_clip=spec["cell_clip"],
            num_proj=spec["num_proj"],
            proj_clip=spec["proj_clip"],
            forget_bias=spec["forget_bias"],
        )
    if kind == "GRUCell":
        return tf1.GRUCell(spec["num_units"])
    assert kind == "BasicRNNCell"
    return tf1.BasicRNNCell(spec["num_units"])


def make_stack(desc: dict[str, Any]) -> Any:
    cells = [make_cell(spec) for spec in desc["cells"]]
    return tf1.MultiRNNCell(cells) if desc["layout"] == "multi_rnn_cell" else cells[0]


def run_facade(case: Case, restore_first: bool) -> dict[str, torch.Tensor]:
    """Build the case's model with the facade, as the TF program did, restore it, run it."""
    x, lengths, time_major = case.io["x"], case.lengths, case.info["time_major"]
    got: dict[str, torch.Tensor] = {}
    for rnn in case.info["rnns"]:
        p = rnn["io_prefix"]
        if rnn["layout"] == "bidirectional":
            model = (make_stack(rnn["fw"]), make_stack(rnn["bw"]))
            if restore_first:
                tf1.restore(model, case.prefix, rnn["rnn_scope"])
            else:  # TF's order: build by running, then restore (scope recorded by the run)
                tf1.bidirectional_dynamic_rnn(*model, x, lengths, time_major=time_major)
                tf1.restore(model, case.prefix)
            (out_fw, out_bw), (fw, bw) = tf1.bidirectional_dynamic_rnn(
                *model, x, sequence_length=lengths, time_major=time_major
            )
            got.update(
                {
                    "outputs/fw": out_fw,
                    "outputs/bw": out_bw,
                    **flatten("state/fw", fw),
                    **flatten("state/bw", bw),
                }
            )
            continue
        cell = make_stack(rnn)
        start = None
        if rnn["initial_state"]:
            start = initial_state(case, p, len(rnn["cells"]))
            start = start if rnn["layout"] != "single" else start[0]
        with tf1.variable_scope(rnn["variable_scope"]) if rnn["variable_scope"] else _no_scope():
            if restore_first:
                tf1.restore(cell, case.prefix, rnn["rnn_scope"])
            else:
                tf1.dynamic_rnn(cell, x, lengths, start, time_major=time_major)
                assert cell.tf_scope == rnn["rnn_scope"]
                tf1.restore(cell, case.prefix)
            outputs, state = tf1.dynamic_rnn(
                cell, x, sequence_length=lengths, initial_state=start, time_major=time_major
            )
        got[f"{p}outputs"] = outputs
        got.update(flatten(f"{p}state", state))
    return got


class _no_scope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


@pytest.mark.parametrize(
    "restore_first", [True, False], ids=["restore-then-run", "run-then-restore"]
)
@pytest.mark.parametrize("name", CASES)
def test_facade_with_restore_reproduces_tensorflow(name, restore_first):
    case = load_case(name)
    compare(case, run_facade(case, restore_first))


@pytest.mark.parametrize(
    "name",
    [
        "seed_two_gru_encoders",
        "bidirectional_multi_lstm",
        "nested_scope",
        "lstm_peepholes_proj_clip",
    ],
)
def test_get_variables_gives_back_the_checkpoint(name):
    case = load_case(name)
    saved = read_checkpoint(case.prefix)
    rebuilt: dict[str, np.ndarray] = {}
    for rnn in case.info["rnns"]:
        if rnn["layout"] == "bidirectional":
            model: Any = (make_stack(rnn["fw"]), make_stack(rnn["bw"]))
        else:
            model = make_stack(rnn)
        tf1.restore(model, case.prefix, rnn["rnn_scope"])
        rebuilt.update(tf1.get_variables(model, rnn["rnn_scope"]))
    assert sorted(rebuilt) == sorted(saved)
    for key in saved:
        np.testing.assert_array_equal(rebuilt[key], saved[key], err_msg=key)


def test_tf_default_initialisers():
    torch.manual_seed(0)
    cells = tf1.MultiRNNCell(
        [tf1.LSTMCell(30, use_peepholes=True, num_proj=10), tf1.GRUCell(40), tf1.BasicRNNCell(20)]
    )
    tf1.dynamic_rnn(cells, torch.zeros(2, 3, 50))
    variables = tf1.get_variables(cells)
    for name, value in variables.items():
        if name.endswith("gates/bias"):
            assert np.all(value == 1.0), name
        elif name.endswith("bias"):
            assert np.all(value == 0.0), name
        else:
            fan_in, fan_out = (value.shape[0], value.shape[-1])
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            assert np.abs(value).max() <= limit, name
            assert np.abs(value).max() > 0.8 * limit, name  # spread over the whole range
            assert abs(value.mean()) < 0.1 * limit, name
    kernel = variables["rnn/multi_rnn_cell/cell_0/lstm_cell/kernel"]
    assert kernel.shape == (50 + 10, 120)


def test_multi_rnn_cell_refuses_one_cell_for_two_layers():
    cell = tf1.BasicLSTMCell(num_units=20)
    with pytest.raises(ValueError) as info:
        tf1.MultiRNNCell([cell] * 2)
    message = str(info.value)
    assert "cells[0] and cells[1] are the same BasicLSTMCell object" in message
    assert "MultiRNNCell([BasicLSTMCell(num_units=20) for _ in range(2)])" in message


def test_cells_build_lazily_at_the_first_call():
    cell = tf1.GRUCell(4)
    assert not cell.built and list(cell.parameters()) == []
    outputs, state = tf1.dynamic_rnn(cell, torch.randn(2, 3, 5))
    assert cell.built and cell.cell.input_size == 5
    assert outputs.shape == (2, 3, 4) and state.shape == (2, 4)
    with pytest.raises(ValueError, match="was built for 5 input features, got 6"):
        tf1.dynamic_rnn(cell, torch.randn(2, 3, 6))


def test_one_step_call_equals_the_first_step_of_dynamic_rnn():
    cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(6), tf1.GRUCell(5)])
    x = torch.randn(3, 4, 2)
    outputs, _ = tf1.dynamic_rnn(cells, x)
    step, state = cells(x[:, 0], cells.zero_state(3, torch.float32))
    torch.testing.assert_close(step, outputs[:, 0])
    assert isinstance(state[0], tf1.LSTMStateTuple) and state[1].shape == (3, 5)
    assert cells.state_size == (tf1.LSTMStateTuple(6, 6), 5) and cells.output_size == 5


def test_dynamic_rnn_returns_tf_structures():
    single = tf1.BasicLSTMCell(4)
    outputs, state = tf1.dynamic_rnn(single, np.random.randn(2, 3, 5).astype(np.float32))
    assert isinstance(state, tf1.LSTMStateTuple) and state.h.shape == (2, 4)
    proj = tf1.LSTMCell(8, num_proj=3)
    outputs, state = tf1.dynamic_rnn(proj, torch.randn(2, 3, 5), time_major=True)
    assert outputs.shape == (2, 3, 3) and state.c.shape == (3, 8) and state.h.shape == (3, 3)


def test_gradients_reach_the_cells():
    cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(4), tf1.BasicRNNCell(3)])
    outputs, _ = tf1.dynamic_rnn(cells, torch.randn(2, 3, 5))
    outputs.sum().backward()
    params = list(cells.parameters())
    assert len(params) == 6 and all(p.grad is not None for p in params)


def test_one_cell_under_two_scopes_is_refused():
    cell = tf1.GRUCell(4)
    x = torch.randn(2, 3, 5)
    with tf1.variable_scope("encoder1") as scope:
        assert scope.name == "encoder1"
        tf1.dynamic_rnn(cell, x)
    assert cell.tf_scope == "encoder1/rnn"
    with (
        tf1.variable_scope("encoder2"),
        pytest.raises(ValueError, match="already ran under scope 'encoder1/rnn'"),
    ):
        tf1.dynamic_rnn(cell, x)


def test_bidirectional_needs_two_cells():
    cell = tf1.GRUCell(4)
    with pytest.raises(ValueError, match="cell_bw: is the same object as cell_fw"):
        tf1.bidirectional_dynamic_rnn(cell, cell, torch.randn(2, 3, 5))


def test_restore_reports_a_model_that_differs():
    case = load_case("mixed_multi")
    wrong = tf1.MultiRNNCell([tf1.BasicLSTMCell(8), tf1.GRUCell(7), tf1.GRUCell(5)])
    with pytest.raises(ValueError) as info:
        tf1.restore(wrong, case.prefix)
    message = str(info.value)
    assert "layer 1: the model has GRUCell(num_units=7)" in message
    assert (
        "layer 2: the model has GRUCell(num_units=5) reading 6 features, the checkpoint has "
        "BasicRNNCell(num_units=5)" in message
    )
    with pytest.raises(
        ValueError, match="the model is one cell, the checkpoint holds a MultiRNNCell"
    ):
        tf1.restore(tf1.BasicLSTMCell(8), case.prefix)
    built = tf1.BasicLSTMCell(5)
    tf1.dynamic_rnn(built, torch.randn(1, 2, 3))
    with pytest.raises(ValueError, match="reading 3 features, the checkpoint has BasicLSTMCell"):
        tf1.restore(built, load_case("lstm_sequence_length").prefix)


def test_restore_bidirectional_scope_needs_the_pair():
    prefix = load_case("bidirectional_gru").prefix
    with pytest.raises(ValueError, match=r"pass the pair: restore\(\(cell_fw, cell_bw\)"):
        tf1.restore(tf1.GRUCell(5), prefix, "bidirectional_rnn")
    fw = tf1.GRUCell(5)
    tf1.restore(fw, prefix, "bidirectional_rnn/fw")  # one direction on its own is a stack
    assert fw.cell.input_size == 4


def test_restore_is_strict_about_leftovers():
    variables = read_checkpoint(load_case("gru").prefix)
    # an unknown child (optimizer slots such as kernel/Adam are skipped: test_legacy_trained.py)
    variables["rnn/gru_cell/gates/kernel/MySlot"] = variables["rnn/gru_cell/gates/kernel"]
    with pytest.raises(ValueError, match="rnn/gru_cell/gates/kernel/MySlot"):
        tf1.restore(tf1.GRUCell(7), variables)
    tf1.restore(tf1.GRUCell(7), variables, ignore=["*/MySlot"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_units: expected a positive int, got 0"):
        tf1.GRUCell(0)
    # state_is_tuple=False is supported now (tests/tf1/test_legacy_facade.py); a non-bool is refused
    with pytest.raises(TypeError, match="state_is_tuple: expected a bool"):
        tf1.BasicLSTMCell(4, state_is_tuple=None)
    with pytest.raises(
        ValueError, match="activation: expected None, one of .* or the torch function"
    ):
        tf1.GRUCell(4, activation=torch.softmax)
    assert tf1.GRUCell(4, activation=torch.sigmoid).activation == "sigmoid"
    assert tf1.BasicRNNCell(4, activation=torch.relu).activation == "relu"
    with pytest.raises(ValueError, match="proj_clip: clips the projection, so it needs num_proj"):
        tf1.LSTMCell(4, proj_clip=1.0)
    with pytest.raises(TypeError, match="cells\\[1\\]: expected BasicLSTMCell"):
        tf1.MultiRNNCell([tf1.GRUCell(3), torch.nn.Linear(2, 2)])
    with pytest.raises(
        TypeError, match="inputs: expected dtype torch.float64 \\(the dtype argument\\)"
    ):
        tf1.dynamic_rnn(tf1.GRUCell(3), torch.randn(2, 3, 4), dtype=torch.float64)
    with pytest.raises(TypeError, match="cell: expected a tf1 cell"):
        tf1.dynamic_rnn(torch.nn.GRU(4, 3), torch.randn(2, 3, 4))
    with pytest.raises(TypeError, match="initial_state: expected one state per layer"):
        tf1.dynamic_rnn(
            tf1.MultiRNNCell([tf1.GRUCell(3)]),
            torch.randn(2, 3, 4),
            initial_state=torch.zeros(2, 3),
        )


def test_facade_reexports():
    assert tf1.LSTMStateTuple is __import__("rnnfuse").LSTMState
    from rnnfuse.tf1 import checkpoint as tf1_checkpoint
    from rnnfuse.tf1 import convert as tf1_convert

    assert tf1.read_checkpoint is tf1_checkpoint.read_checkpoint
    assert tf1.CheckpointError is tf1_checkpoint.CheckpointError
    assert tf1.load_stack is tf1_convert.load_stack


def test_one_step_with_a_state_of_the_wrong_depth_is_refused():
    cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(4), tf1.GRUCell(3)])
    x = torch.randn(2, 5)
    cells(x)  # builds the cells
    one_layer = cells.zero_state(2, torch.float32)[:1]
    with pytest.raises(ValueError, match=r"state: expected one state per layer \(2\), got 1"):
        cells(x, one_layer)


@pytest.mark.parametrize("extra", [-1, 1])
def test_dynamic_rnn_of_wrapped_cells_refuses_a_state_of_the_wrong_depth(extra: int):
    cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(4), tf1.ResidualWrapper(tf1.BasicLSTMCell(4))])
    x = torch.randn(2, 3, 5)
    tf1.dynamic_rnn(cells, x)  # builds the cells
    state = cells.zero_state(2, torch.float32)
    state = state[:1] if extra < 0 else (*state, state[-1])
    with pytest.raises(
        ValueError, match=rf"initial_state: expected one state per layer \(2\), got {2 + extra}"
    ):
        tf1.dynamic_rnn(cells, x, initial_state=state)
