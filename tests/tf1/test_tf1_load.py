"""rnnfuse.tf1.load_stack against checkpoints and outputs written by TensorFlow.

The fixtures under tests/fixtures/tf1/<case>/ were written by TensorFlow 2.21's tf.compat.v1
(see tests/fixtures/tf1/make_fixtures.py for how to regenerate them): a Saver checkpoint,
io.npz with the inputs and every output and state part TF computed, case.json describing
the cells.  The helpers here are shared with the other TF1 test modules.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rnnfuse.bidirectional import BidirectionalRNN
from rnnfuse.state import LSTMState
from rnnfuse.tf1.checkpoint import CheckpointError, read_checkpoint
from rnnfuse.tf1.convert import TF1VariableError, load_stack, stack_from_variables, stack_to_tf

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tf1"
CASES = sorted(p.name for p in FIXTURES.iterdir() if (p / "case.json").is_file())
EXPECTED_CASES = {
    "basic_lstm",
    "basic_lstm_forget_bias",
    "lstm_peepholes",
    "lstm_proj",
    "lstm_peepholes_proj_clip",
    "gru",
    "basic_rnn",
    "seed_multi_lstm",
    "seed_two_gru_encoders",
    "mixed_multi",
    "lstm_sequence_length",
    "gru_sequence_length",
    "bidirectional_multi_lstm",
    "bidirectional_gru",
    "nested_scope",
    "float64",
    "initial_state",
}


@dataclass
class Case:
    name: str
    info: dict[str, Any]
    io: dict[str, np.ndarray]

    @property
    def prefix(self) -> Path:
        return FIXTURES / self.name / "model"

    @property
    def lengths(self) -> np.ndarray | None:
        return self.io.get("sequence_length")

    @property
    def tolerance(self) -> float:
        return 1e-5 if self.info["dtype"] == "float32" else 1e-12


def load_case(name: str) -> Case:
    info = json.loads((FIXTURES / name / "case.json").read_text())
    with np.load(FIXTURES / name / "io.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return Case(name, info, arrays)


def flatten(prefix: str, state: Any) -> dict[str, torch.Tensor]:
    """make_fixtures.flatten: LSTMState -> prefix/c, prefix/h; tuple -> prefix/<i>."""
    if isinstance(state, LSTMState):
        return {f"{prefix}/c": state.c, f"{prefix}/h": state.h}
    if isinstance(state, tuple):
        return {k: v for i, s in enumerate(state) for k, v in flatten(f"{prefix}/{i}", s).items()}
    return {prefix: state}


def initial_state(case: Case, io_prefix: str, num_layers: int) -> tuple:
    def layer(i: int) -> Any:
        key = f"{io_prefix}initial_state/{i}"
        if f"{key}/c" in case.io:
            return LSTMState(
                torch.from_numpy(case.io[f"{key}/c"]), torch.from_numpy(case.io[f"{key}/h"])
            )
        return torch.from_numpy(case.io[key])

    return tuple(layer(i) for i in range(num_layers))


def stack_options(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """load_stack's run-time options (not in the checkpoint) from the case description."""
    lstm = [c for c in cells if "forget_bias" in c]
    options: dict[str, Any] = {}
    for key in ("forget_bias", "cell_clip", "proj_clip"):
        values = {c.get(key) for c in lstm}
        assert len(values) <= 1, f"{key} differs between layers: {values}"
        if values and values != {None}:
            options[key] = values.pop()
    return options


def compare(case: Case, got: dict[str, torch.Tensor]) -> float:
    """Every output/state array TF wrote must be in ``got`` and agree; returns the max error."""
    expected = {
        k for k in case.io if k not in ("x", "sequence_length") and "initial_state" not in k
    }
    assert set(got) == expected
    worst = 0.0
    for key in sorted(expected):
        value = got[key].detach().numpy()
        assert value.dtype == case.io[key].dtype, key
        np.testing.assert_allclose(value, case.io[key], rtol=0, atol=case.tolerance, err_msg=key)
        worst = max(worst, float(np.abs(value - case.io[key]).max(initial=0.0)))
    return worst


def run_loaded(case: Case) -> dict[str, torch.Tensor]:
    """Load every RNN of the case with load_stack and run it on the case's inputs."""
    got: dict[str, torch.Tensor] = {}
    x = torch.from_numpy(case.io["x"])
    for rnn in case.info["rnns"]:
        bidirectional = rnn["layout"] == "bidirectional"
        cells = rnn["fw"]["cells"] + rnn["bw"]["cells"] if bidirectional else rnn["cells"]
        module = load_stack(
            case.prefix,
            rnn["rnn_scope"],
            batch_first=not case.info["time_major"],
            **stack_options(cells),
        )
        p = rnn["io_prefix"]
        with torch.no_grad():
            if bidirectional:
                assert isinstance(module, BidirectionalRNN)
                (out_fw, out_bw), (fw, bw) = module.forward_split(x, case.lengths)
                got.update({"outputs/fw": out_fw, "outputs/bw": out_bw})
                for side, state, desc in (("fw", fw, rnn["fw"]), ("bw", bw, rnn["bw"])):
                    got.update(
                        flatten(f"state/{side}", state if desc["layout"] != "single" else state[0])
                    )
            else:
                start = initial_state(case, p, len(cells)) if rnn["initial_state"] else None
                outputs, state = module(x, case.lengths, start)
                got[f"{p}outputs"] = outputs
                got.update(flatten(f"{p}state", state if rnn["layout"] != "single" else state[0]))
    return got


def test_every_fixture_case_is_present():
    assert EXPECTED_CASES <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_load_stack_reproduces_tensorflow(name):
    case = load_case(name)
    compare(case, run_loaded(case))


@pytest.mark.parametrize("name", CASES)
def test_stack_to_tf_gives_back_the_checkpoint(name):
    """load_stack's conversion inverted: the same names and the very same numbers."""
    case = load_case(name)
    saved = read_checkpoint(case.prefix)
    rebuilt = {}
    for rnn in case.info["rnns"]:
        module = load_stack(case.prefix, rnn["rnn_scope"])
        stacks = [module.fw, module.bw] if isinstance(module, BidirectionalRNN) else [module]
        descs = [rnn["fw"], rnn["bw"]] if isinstance(module, BidirectionalRNN) else [rnn]
        for stack, desc, scope in zip(stacks, descs, _scopes(rnn)):
            names = [_tf_name(c["type"]) for c in desc["cells"]]
            rebuilt.update(
                stack_to_tf(
                    stack, scope, multi=desc["layout"] == "multi_rnn_cell", cell_names=names
                )
            )
    assert sorted(rebuilt) == sorted(saved)
    for key, value in saved.items():
        np.testing.assert_array_equal(rebuilt[key], value, err_msg=key)


def _scopes(rnn: dict[str, Any]) -> list[str]:
    s = rnn["rnn_scope"]
    return [f"{s}/fw", f"{s}/bw"] if rnn["layout"] == "bidirectional" else [s]


def _tf_name(cell_type: str) -> str:
    return {
        "BasicLSTMCell": "basic_lstm_cell",
        "LSTMCell": "lstm_cell",
        "GRUCell": "gru_cell",
        "BasicRNNCell": "basic_rnn_cell",
    }[cell_type]


def test_time_major_and_batch_major_agree():
    case = load_case("seed_multi_lstm")
    time_major = load_stack(case.prefix, batch_first=False)
    batch_major = load_stack(case.prefix, batch_first=True)
    x = torch.from_numpy(case.io["x"])
    with torch.no_grad():
        a, _ = time_major(x)
        b, _ = batch_major(x.transpose(0, 1))
    torch.testing.assert_close(a, b.transpose(0, 1), rtol=0, atol=0)


def test_pre_tf_1_2_names_weights_and_biases():
    case = load_case("mixed_multi")
    old = {
        k.replace("/kernel", "/weights").replace("/bias", "/biases"): v
        for k, v in read_checkpoint(case.prefix).items()
    }
    assert any(k.endswith("gates/weights") for k in old)
    stack = stack_from_variables(old, "rnn")
    with torch.no_grad():
        outputs, _ = stack(torch.from_numpy(case.io["x"]))
    np.testing.assert_allclose(outputs.numpy(), case.io["outputs"], rtol=0, atol=1e-5)


def test_relu_basic_rnn_matches_numpy_reference():
    """TF's BasicRNNCell(activation=relu): h = relu([x, h] @ kernel + bias), step by step."""
    case = load_case("basic_rnn")
    variables = read_checkpoint(case.prefix)
    kernel, bias = variables["rnn/basic_rnn_cell/kernel"], variables["rnn/basic_rnn_cell/bias"]
    x = case.io["x"].astype(np.float64)
    h = np.zeros((x.shape[0], bias.shape[0]))
    expected = []
    for t in range(x.shape[1]):
        h = np.maximum(np.concatenate([x[:, t], h], axis=1) @ kernel + bias, 0.0)
        expected.append(h)
    stack = load_stack(case.prefix, activation="relu")
    with torch.no_grad():
        outputs, (state,) = stack(torch.from_numpy(case.io["x"]))
    np.testing.assert_allclose(outputs.numpy(), np.stack(expected, 1), rtol=0, atol=1e-5)
    np.testing.assert_allclose(state.numpy(), h, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------- errors
def _variables(name: str) -> dict[str, np.ndarray]:
    return read_checkpoint(FIXTURES / name / "model")


def test_missing_variable_is_listed():
    variables = _variables("mixed_multi")
    del variables["rnn/multi_rnn_cell/cell_1/gru_cell/candidate/bias"]
    with pytest.raises(
        TF1VariableError, match=r"missing:\n\s+rnn/multi_rnn_cell/cell_1/gru_cell/candidate/bias"
    ):
        stack_from_variables(variables, "rnn")


def test_missing_layer_is_listed():
    variables = {k.replace("cell_2", "cell_3"): v for k, v in _variables("mixed_multi").items()}
    with pytest.raises(TF1VariableError, match=r"rnn/multi_rnn_cell/cell_2/\.\.\."):
        stack_from_variables(variables, "rnn")


def test_leftover_variables_are_listed_and_can_be_ignored():
    variables = _variables("basic_lstm")
    # an unknown child of a variable (optimizer slots such as kernel/Adam are skipped since
    # trained checkpoints load by default: tests/tf1/test_legacy_trained.py)
    variables["rnn/basic_lstm_cell/kernel/MySlot"] = variables["rnn/basic_lstm_cell/kernel"]
    variables["rnn/basic_lstm_cell/extra"] = np.zeros(3, np.float32)
    variables["rnn/something_else"] = np.zeros(3, np.float32)
    variables["global_step"] = np.zeros((), np.int64)  # outside the scope: not ours
    with pytest.raises(TF1VariableError) as info:
        stack_from_variables(variables, "rnn")
    message = str(info.value)
    for name in (
        "rnn/basic_lstm_cell/kernel/MySlot",
        "rnn/basic_lstm_cell/extra",
        "rnn/something_else",
    ):
        assert name in message
    assert "global_step" not in info.value.unexpected  # outside the scope: not listed
    assert set(info.value.unexpected) == {
        "rnn/basic_lstm_cell/kernel/MySlot",
        "rnn/basic_lstm_cell/extra",
        "rnn/something_else",
    }
    stack = stack_from_variables(
        variables, "rnn", ignore=["*/MySlot", "*/extra", "rnn/something_else"]
    )
    assert stack.hidden_sizes == (8,)


def test_wrong_shapes_are_listed_with_what_was_expected():
    variables = _variables("lstm_peepholes")
    variables["rnn/lstm_cell/bias"] = np.zeros(23, np.float32)
    variables["rnn/lstm_cell/w_f_diag"] = np.zeros(5, np.float32)
    with pytest.raises(TF1VariableError) as info:
        stack_from_variables(variables, "rnn")
    message = str(info.value)
    assert "rnn/lstm_cell/bias: expected [24]" in message and "got [23]" in message
    assert "rnn/lstm_cell/w_f_diag: expected [6]" in message


def test_layers_that_do_not_chain_are_reported():
    variables = _variables("seed_multi_lstm")
    kernel = "rnn/multi_rnn_cell/cell_1/basic_lstm_cell/kernel"
    variables[kernel] = np.zeros((14, 20), np.float32)  # reads 9 features, layer 0 writes 8
    with pytest.raises(TF1VariableError, match="input of size 9, but the layer below outputs 8"):
        stack_from_variables(variables, "rnn")


def test_partial_peepholes_are_missing():
    variables = _variables("lstm_peepholes")
    del variables["rnn/lstm_cell/w_o_diag"]
    with pytest.raises(TF1VariableError, match="rnn/lstm_cell/w_o_diag"):
        stack_from_variables(variables, "rnn")


def test_wrong_scope_names_the_scopes_found():
    case = load_case("seed_two_gru_encoders")
    with pytest.raises(
        TF1VariableError, match=r"no variables under 'rnn'.*\['encoder1/rnn', 'encoder2/rnn'\]"
    ):
        load_stack(case.prefix)
    with pytest.raises(ValueError, match="scope: expected a TF scope name"):
        load_stack(case.prefix, "")


def test_unknown_cell_is_named():
    variables = {
        k.replace("basic_lstm_cell", "lstm_block_cell"): v
        for k, v in _variables("basic_lstm").items()
    }
    with pytest.raises(
        TF1VariableError,
        match=r"unknown cell 'lstm_block_cell' at rnn/lstm_block_cell.*basic_lstm_cell",
    ):
        stack_from_variables(variables, "rnn")


def test_bidirectional_needs_both_directions():
    variables = {k: v for k, v in _variables("bidirectional_gru").items() if "/bw/" not in k}
    with pytest.raises(TF1VariableError, match=r"bidirectional_rnn/bw/\.\.\."):
        stack_from_variables(variables, "bidirectional_rnn")


def test_integer_variable_is_refused():
    variables = _variables("basic_rnn")
    variables["rnn/basic_rnn_cell/bias"] = variables["rnn/basic_rnn_cell/bias"].astype(np.int32)
    with pytest.raises(
        TF1VariableError, match="bias: expected a floating-point variable, got dtype int32"
    ):
        stack_from_variables(variables, "rnn")


def test_options_the_checkpoint_cannot_use_are_refused():
    with pytest.raises(ValueError, match="cell_clip: only TF's LSTMCell"):
        load_stack(FIXTURES / "basic_lstm" / "model", cell_clip=1.0)
    with pytest.raises(ValueError, match="proj_clip: clips a projection"):
        load_stack(FIXTURES / "lstm_peepholes" / "model", proj_clip=1.0)
    # any activation is a cell option now (tests/tf1/test_tf1_activations.py); an unknown one is not
    with pytest.raises(ValueError, match="activation: expected one of .*got 'softmax'"):
        load_stack(FIXTURES / "gru" / "model", activation="softmax")


def test_missing_checkpoint_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError):
        load_stack(tmp_path / "nothing")


def test_forget_bias_matters():
    """The checkpoint does not store forget_bias: the wrong one gives other numbers."""
    case = load_case("basic_lstm_forget_bias")
    with torch.no_grad():
        right, _ = load_stack(case.prefix, forget_bias=0.5)(torch.from_numpy(case.io["x"]))
        wrong, _ = load_stack(case.prefix)(torch.from_numpy(case.io["x"]))
    assert np.abs(right.numpy() - case.io["outputs"]).max() < 1e-5
    assert np.abs(wrong.numpy() - case.io["outputs"]).max() > 1e-3
