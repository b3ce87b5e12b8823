"""TF1 facade idioms against TensorFlow: wrappers, static RNNs, stack_bidirectional_dynamic_rnn,
state_is_tuple=False.  Each test is the TF1 program of tests/fixtures/legacy/<case>
(make_legacy_fixtures.py) with its imports changed, restored from TF's checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnfuse import tf1

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
TOL = 1e-6


def io(case: str) -> dict[str, np.ndarray]:
    with np.load(LEGACY / case / "io.npz") as data:
        return {k: data[k] for k in data.files}


def flat(state, prefix: str) -> dict[str, np.ndarray]:
    """A (nested) TF state as the fixtures' io keys."""
    if isinstance(state, tf1.LSTMStateTuple):
        return {f"{prefix}/c": state.c.detach().numpy(), f"{prefix}/h": state.h.detach().numpy()}
    if isinstance(state, torch.Tensor):
        return {prefix: state.detach().numpy()}
    out = {}
    for k, s in enumerate(state):
        out.update(flat(s, f"{prefix}/{k}"))
    return out


def check(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for key, value in got.items():
        assert value.shape == want[key].shape, key
        worst = max(worst, float(np.abs(value - want[key]).max()))
    assert worst <= TOL, worst
    return worst


def gnmt_program(x, lengths, training=False):
    """GNMT's encoder (bidirectional layer, then residual uni layers), as in the TF source."""

    def cell(n):
        return tf1.DropoutWrapper(tf1.BasicLSTMCell(n), input_keep_prob=1.0)

    with tf1.variable_scope("encoder"):
        fw, bw = cell(4), cell(4)
        bi_outputs, bi_state = tf1.bidirectional_dynamic_rnn(fw, bw, x, sequence_length=lengths)
        bi = torch.cat(bi_outputs, -1)
        uni = tf1.MultiRNNCell([cell(4), tf1.ResidualWrapper(cell(4))])
        outputs, uni_state = tf1.dynamic_rnn(uni, bi, sequence_length=lengths)
    return (fw, bw, uni), bi_outputs, bi_state, outputs, uni_state


def test_gnmt_encoder_ported():
    data = io("gnmt_encoder")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    (fw, bw, uni), *_ = gnmt_program(x, lengths)
    prefix = LEGACY / "gnmt_encoder" / "model"
    tf1.restore((fw, bw), prefix, "encoder/bidirectional_rnn")
    tf1.restore(uni, prefix, "encoder/rnn")  # the wrappers restore their inner cells
    with torch.no_grad():
        _, (out_fw, out_bw), bi_state, outputs, uni_state = gnmt_program_again(
            fw, bw, uni, x, lengths
        )
    encoder_state = (bi_state[1], *uni_state)
    check(
        {
            "outputs": outputs.numpy(),
            "bi_outputs/fw": out_fw.numpy(),
            "bi_outputs/bw": out_bw.numpy(),
            **flat(bi_state[0], "bi_state/fw"),
            **flat(uni_state, "uni_state"),
            **flat(encoder_state, "encoder_state"),
        },
        data,
    )


def gnmt_program_again(fw, bw, uni, x, lengths):
    with tf1.variable_scope("encoder"):
        bi_outputs, bi_state = tf1.bidirectional_dynamic_rnn(fw, bw, x, sequence_length=lengths)
        outputs, uni_state = tf1.dynamic_rnn(
            uni, torch.cat(bi_outputs, -1), sequence_length=lengths
        )
    return None, bi_outputs, bi_state, outputs, uni_state


def test_dropout_wrapper_drops_only_in_training():
    torch.manual_seed(0)
    cell = tf1.DropoutWrapper(
        tf1.GRUCell(5), input_keep_prob=0.5, output_keep_prob=0.5, state_keep_prob=0.5, seed=3
    )
    x = torch.randn(2, 6, 3)
    cell.eval()
    a, _ = tf1.dynamic_rnn(cell, x)
    b, _ = tf1.dynamic_rnn(cell, x)
    assert torch.equal(a, b)
    cell.train()
    c, _ = tf1.dynamic_rnn(cell, x)
    assert not torch.allclose(a, c) and bool((c == 0).any())
    var = tf1.DropoutWrapper(tf1.GRUCell(5), input_keep_prob=0.5, variational_recurrent=True)
    var.train()
    tf1.dynamic_rnn(var, x)  # one input mask per sequence
    with pytest.raises(ValueError, match="input_keep_prob: expected a probability in \\(0, 1\\]"):
        tf1.DropoutWrapper(tf1.GRUCell(5), input_keep_prob=0.0)


def test_stack_bidirectional_dynamic_rnn():
    data = io("stack_bidirectional")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    cells_fw = [tf1.BasicLSTMCell(4), tf1.BasicLSTMCell(3)]
    cells_bw = [tf1.BasicLSTMCell(4), tf1.BasicLSTMCell(3)]
    tf1.restore((cells_fw, cells_bw), LEGACY / "stack_bidirectional" / "model")
    with torch.no_grad():
        outputs, states_fw, states_bw = tf1.stack_bidirectional_dynamic_rnn(
            cells_fw, cells_bw, x, sequence_length=lengths
        )
    check(
        {
            "outputs": outputs.numpy(),
            **flat(states_fw, "states_fw"),
            **flat(states_bw, "states_bw"),
        },
        data,
    )
    assert sorted(tf1.get_variables((cells_fw[0], cells_bw[0]))) == sorted(
        n for n in tf1.read_checkpoint(LEGACY / "stack_bidirectional" / "model") if "cell_0/" in n
    )


def test_static_rnn():
    data = io("static_rnn")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    cell = tf1.MultiRNNCell([tf1.LSTMCell(4), tf1.GRUCell(3)])
    tf1.restore(cell, LEGACY / "static_rnn" / "model")
    with torch.no_grad():
        outputs, state = tf1.static_rnn(cell, list(x.unbind(1)), sequence_length=lengths)
    assert isinstance(outputs, list) and len(outputs) == x.shape[1]
    check({"outputs": torch.stack(outputs, 1).numpy(), **flat(state, "state")}, data)


def test_static_bidirectional_rnn():
    data = io("static_bidirectional_rnn")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    fw = tf1.MultiRNNCell([tf1.BasicLSTMCell(4), tf1.BasicLSTMCell(3)])
    bw = tf1.GRUCell(3)
    tf1.restore((fw, bw), LEGACY / "static_bidirectional_rnn" / "model")
    with torch.no_grad():
        outputs, state_fw, state_bw = tf1.static_bidirectional_rnn(
            fw, bw, list(x.unbind(1)), sequence_length=lengths
        )
    check(
        {
            "outputs": torch.stack(outputs, 1).numpy(),
            **flat(state_fw, "state/fw"),
            "state/bw": state_bw.numpy(),
        },
        data,
    )


def test_state_is_tuple_false():
    data = io("state_is_tuple_false")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    cell = tf1.MultiRNNCell(
        [
            tf1.BasicLSTMCell(4, state_is_tuple=False),
            tf1.LSTMCell(5, num_proj=3, state_is_tuple=False),
        ],
        state_is_tuple=False,
    )
    tf1.restore(cell, LEGACY / "state_is_tuple_false" / "model")
    assert cell.state_size == 16
    with torch.no_grad():
        outputs, state = tf1.dynamic_rnn(cell, x, sequence_length=lengths)
        check({"outputs": outputs.numpy(), "state": state.numpy()}, data)
        # the concatenated state goes back in as an initial state, and one step takes it too
        again, _ = tf1.dynamic_rnn(
            cell, x, sequence_length=lengths, initial_state=cell.zero_state(3)
        )
        assert torch.equal(again, outputs)
        out, new = cell(x[:, 0], state)
        assert new.shape == (3, 16)


def test_wrapper_restore_and_as_stack():
    uni = tf1.MultiRNNCell([tf1.BasicLSTMCell(4), tf1.ResidualWrapper(tf1.BasicLSTMCell(4))])
    tf1.restore(uni, LEGACY / "gnmt_encoder" / "model", "encoder/rnn")
    stack = tf1.as_stack(uni)
    assert stack.residual == (False, True)


def test_load_stack_reads_stack_bidirectional_as_one_module(tmp_path):
    data = io("stack_bidirectional")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    stack = tf1.load_stack(LEGACY / "stack_bidirectional" / "model", "stack_bidirectional_rnn")
    with torch.no_grad():
        outputs, state = stack(x, lengths)  # one BidirectionalState per layer
    states_fw, states_bw = tuple(s.fw for s in state), tuple(s.bw for s in state)
    check(
        {
            "outputs": outputs.numpy(),
            **flat(states_fw, "states_fw"),
            **flat(states_bw, "states_bw"),
        },
        data,
    )
    from rnnfuse.cli import main

    out = tmp_path / "s.safetensors"
    assert main(["convert", str(LEGACY / "stack_bidirectional" / "model"), "--out", str(out)]) == 0


def test_inspect_stack_bidirectional(capsys):
    from rnnfuse.cli import main

    assert main(["inspect", str(LEGACY / "stack_bidirectional" / "model")]) == 0
    text = capsys.readouterr().out
    assert (
        "stack_bidirectional_rnn: stack_bidirectional_dynamic_rnn, 2 bidirectional layers" in text
    )
    assert "cell_1/bw: BasicLSTMCell(num_units=3), input 8 -> output 3" in text


def _gnmt_expected(stack, data):
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    with torch.no_grad():
        outputs, state = stack(x, lengths)
    (fw, bw), uni0, uni1 = state
    return {
        "outputs": outputs.numpy(),
        **flat(fw, "bi_state/fw"),
        **flat(bw, "bi_state/bw"),
        **flat((uni0, uni1), "uni_state"),
        **flat((bw, uni0, uni1), "encoder_state"),
    }


def test_gnmt_encoder_is_one_module_from_the_checkpoint(tmp_path):
    data = io("gnmt_encoder")
    stack = tf1.load_stack(
        LEGACY / "gnmt_encoder" / "model",
        ["encoder/bidirectional_rnn", "encoder/rnn"],
        residual=[False, False, True],
    )
    assert stack.bidirectional == (True, False, False)
    check(_gnmt_expected(stack, data), data)
    from rnnfuse.io import load, save

    save(stack, tmp_path / "gnmt.safetensors")
    check(_gnmt_expected(load(tmp_path / "gnmt.safetensors"), data), data)


def test_gnmt_encoder_is_one_module_from_the_ported_program():
    data = io("gnmt_encoder")
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    (fw, bw, uni), *_ = gnmt_program(x, lengths)
    prefix = LEGACY / "gnmt_encoder" / "model"
    tf1.restore((fw, bw), prefix, "encoder/bidirectional_rnn")
    tf1.restore(uni, prefix, "encoder/rnn")
    stack = tf1.as_stack([(fw, bw), uni])
    assert stack.residual == (False, False, True)
    check(_gnmt_expected(stack, data), data)


def test_inspect_points_out_gnmt_chains(capsys):
    from rnnfuse.cli import main

    assert main(["inspect", str(LEGACY / "gnmt_encoder" / "model")]) == 0
    text = capsys.readouterr().out
    assert "encoder/bidirectional_rnn -> encoder/rnn: the [fw, bw] outputs fit its input" in text
    assert (
        "load_stack(prefix, ['encoder/bidirectional_rnn', 'encoder/rnn'], residual=[...])" in text
    )


def test_convert_cli_stacks_several_scopes_with_residual_layers(tmp_path, capsys):
    """GNMT's encoder from the shell: two scopes, the top layer residual; TF's numbers."""
    from rnnfuse.cli import main
    from rnnfuse.io import load

    data = io("gnmt_encoder")
    prefix = str(LEGACY / "gnmt_encoder" / "model")
    scopes = ["--scope", "encoder/bidirectional_rnn", "--scope", "encoder/rnn"]
    out = tmp_path / "gnmt.safetensors"
    assert main(["convert", prefix, *scopes, "--residual", "2", "--out", str(out)]) == 0
    with np.load(LEGACY / "gnmt_encoder" / "variables.npz") as variables:  # every TF variable, once
        count = sum(variables[k].size for k in variables.files)
    assert capsys.readouterr().out.startswith(
        f"wrote {out}: StackedRNN from scopes ['encoder/bidirectional_rnn', 'encoder/rnn'], {count} parameters, "
        f"residual layers [2]"
    )
    stack = load(out)
    assert stack.bidirectional == (True, False, False)
    assert stack.residual == (False, False, True)
    check(_gnmt_expected(stack, data), data)
    plain = tmp_path / "plain.safetensors"  # without --residual: the same weights, other numbers
    assert main(["convert", prefix, *scopes, "--out", str(plain)]) == 0
    got = _gnmt_expected(load(plain), data)
    assert np.abs(got["outputs"] - data["outputs"]).max() > 1e-2
    np.testing.assert_array_equal(
        got["bi_state/fw/h"], _gnmt_expected(stack, data)["bi_state/fw/h"]
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--residual", "3"],
            "--residual: layers [3] do not exist; the stack from ['encoder/bidirectional_rnn', "
            "'encoder/rnn'] has 3 layers, numbered 0 to 2",
        ),
        (
            ["--residual", "two"],
            "--residual: expected 'all' or distinct comma-separated layer numbers (0-based), "
            "e.g. 2 or 1,2; got 'two'",
        ),
        (["--residual", "2,2"], "--residual: expected 'all' or distinct"),
        (["--residual", "all"], "residual: layer 1 reads 8 features and writes 4"),
        (["--residual", "1"], "residual: layer 1 reads 8 features and writes 4"),
    ],
)
def test_convert_cli_residual_errors(tmp_path, capsys, args, message):
    from rnnfuse.cli import main

    prefix = str(LEGACY / "gnmt_encoder" / "model")
    out = tmp_path / "x.safetensors"
    assert (
        main(
            [
                "convert",
                prefix,
                "--scope",
                "encoder/bidirectional_rnn",
                "--scope",
                "encoder/rnn",
                *args,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("rnnfuse convert: error: ") and message in err, err
    assert not out.exists()


def test_convert_cli_residual_on_a_bidirectional_scope_is_refused(tmp_path, capsys):
    from rnnfuse.cli import main

    prefix = str(LEGACY / "gnmt_encoder" / "model")
    for residual in ("all", "0"):
        assert (
            main(
                [
                    "convert",
                    prefix,
                    "--scope",
                    "encoder/bidirectional_rnn",
                    "--residual",
                    residual,
                    "--out",
                    str(tmp_path / "x.safetensors"),
                ]
            )
            == 2
        )
        assert "bidirectional_dynamic_rnn" in capsys.readouterr().err
