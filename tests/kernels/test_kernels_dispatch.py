"""rnnfuse.kernels' dispatch: run_layer (whatever path select_path picks) against the
reference loop, edge batches on every path, the path each cell and batch takes, the
cells' kernel specs and cached constants, users' own cells, and a stack through them."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import CELLS, DTYPES, LENGTHS, LENS, B, F, H, T, _leaves, assert_matches_loop

from rnnfuse import StackedRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.cells.base import RecurrentCell
from rnnfuse.kernels import _ext, run_layer, run_loop, select_path
from rnnfuse.kernels.bptt import run_bptt_gru, run_bptt_lstm
from rnnfuse.kernels.fused import run_fused_full
from rnnfuse.kernels.padded import run_fused_padded
from rnnfuse.kernels.ragged import (
    run_fused_packed,
    run_fused_segments,
)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
@pytest.mark.parametrize("name", list(CELLS))
def test_run_layer_equals_loop(name, lengths, reverse, dtype):
    assert_matches_loop(run_layer, name, lengths, reverse, dtype)


PATH_FUNCTIONS = {
    "fused-segments": (run_fused_segments, "lstm"),
    "fused-padded": (run_fused_padded, "lstm"),
    "fused-packed": (run_fused_packed, "gru"),
    "bptt-lstm": (run_bptt_lstm, "lstm-all"),
    "bptt-gru": (run_bptt_gru, "gru-reset-before"),
}


@pytest.mark.parametrize(
    "lengths", [[0] * B, [], [3, 1, 0, 2, 3, 1]], ids=["all-empty", "no-batch", "short"]
)
@pytest.mark.parametrize("path", list(PATH_FUNCTIONS))
def test_edge_batches(path, lengths, bptt_impl):
    """Every sequence empty, an empty batch, and all sequences shorter than T."""
    fn, name = PATH_FUNCTIONS[path]
    cell = CELLS[name]()
    batch = len(lengths)
    x = torch.randn(batch, T, F, requires_grad=True)
    lens = torch.tensor(lengths, dtype=torch.int64)
    state = cell.initial_state(batch)
    y, s = fn(cell, x, lens, state, True)
    y_ref, s_ref = run_loop(cell, x, lens, state, True)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(_leaves(s), _leaves(s_ref)):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------ dispatch and constants


class MyLSTM(LSTMCell):
    """A user's subclass: its step may differ, so it gets the reference loop."""


@pytest.mark.parametrize(
    "cell, lengths, expected",
    [
        (LSTMCell(F, H), None, "fused"),
        (LSTMCell(F, H, forget_bias=1.0), None, "fused"),
        (LSTMCell(F, H, proj_size=2), None, "bptt"),
        (LSTMCell(F, H), LENGTHS, "bptt" if _ext.available() else "fused-segments"),
        (LSTMCell(F, H, peepholes=True), None, "bptt"),
        (LSTMCell(F, H, cell_clip=1.0), LENGTHS, "bptt"),
        (LSTMCell(F, H, proj_size=2, proj_clip=1.0), None, "bptt"),
        (GRUCell(F, H), None, "fused"),
        (GRUCell(F, H), LENGTHS, "fused-segments"),
        (GRUCell(F, H, reset_after=False), LENGTHS, "bptt"),
        (RNNCell(F, H, nonlinearity="relu"), None, "fused"),
        (MyLSTM(F, H), None, "loop"),
        (LSTMCell(F, H), [0] * B, "loop"),
    ],
)
def test_select_path(cell, lengths, expected):
    lens = None if lengths is None else torch.tensor(lengths)
    assert select_path(cell, torch.zeros(B, T, F), lens) == expected


def test_a_ragged_lstm_takes_the_segments_without_the_compiled_loop():
    with _ext.disabled():
        assert (
            select_path(LSTMCell(F, H), torch.zeros(B, T, F), torch.tensor(LENGTHS))
            == "fused-segments"
        )


def test_select_path_empty_batch_is_the_loop():
    assert select_path(LSTMCell(F, H), torch.zeros(0, T, F)) == "loop"
    assert select_path(LSTMCell(F, H), torch.zeros(B, 0, F)) == "loop"


def _fused_weights(cell, dtype=torch.float32):
    return cell.kernel_spec(dtype, torch.device("cpu")).fused_weights


def test_fused_weights_are_the_cells_own_parameters_and_constants_are_cached():
    cell = LSTMCell(F, H, forget_bias=1.0, proj_size=2)
    weights = _fused_weights(cell)
    assert [w is p for w, p in zip(weights, [cell.weight_ih, cell.weight_hh, cell.bias])] == [
        True
    ] * 3
    assert weights[4] is cell.weight_hr
    assert weights[3] is _fused_weights(cell)[3]
    assert not weights[3].requires_grad
    assert weights[3].tolist() == [0.0] * H + [1.0] * H + [0.0] * (2 * H)
    assert _fused_weights(cell, torch.float64)[3].dtype == torch.float64


@pytest.mark.parametrize(
    "cell, mode, bptt",
    [
        (LSTMCell(F, H), "lstm", "LSTMKernelArgs"),
        (LSTMCell(F, H, peepholes=True), None, "LSTMKernelArgs"),
        (GRUCell(F, H), "gru", None),
        (GRUCell(F, H, reset_after=False), None, "GRUKernelArgs"),
        (RNNCell(F, H), "rnn_tanh", None),
        (RNNCell(F, H, nonlinearity="relu"), "rnn_relu", None),
    ],
)
def test_kernel_spec_describes_the_cell(cell, mode, bptt):
    spec = cell.kernel_spec(torch.float32, torch.device("cpu"))
    assert spec.mode == mode and (spec.fused_weights is not None) == (mode is not None)
    assert (None if spec.bptt is None else type(spec.bptt()).__name__) == bptt


def test_the_effective_bias_holds_the_forget_bias():
    cell = LSTMCell(F, H, forget_bias=1.5, peepholes=True)
    args = cell.kernel_spec(torch.float32, torch.device("cpu")).bptt()
    torch.testing.assert_close(
        args.bias, cell.bias + torch.tensor([0.0, 1.5, 0.0, 0.0]).repeat_interleave(H)
    )
    assert args.bias.requires_grad and args.peepholes.shape == (3, H)
    assert LSTMCell(F, H).kernel_spec(torch.float32, torch.device("cpu")).bptt().bias is not None


class MyCell(RecurrentCell):
    """A user's own cell with no kernel spec: h' = tanh(x W + h)."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.weight_ih = torch.nn.Parameter(torch.randn(hidden_size, input_size))

    def initial_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def project_input(self, x):
        return x @ self.weight_ih.t()

    def step_projected(self, xw, state):
        h = torch.tanh(xw + state)
        return h, h


@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
def test_a_users_cell_without_a_spec_takes_the_loop(lengths):
    cell = MyCell(F, H)
    assert cell.kernel_spec(torch.float32, torch.device("cpu")) is None
    lens = None if lengths is None else torch.tensor(lengths)
    x = torch.randn(B, T, F)
    assert select_path(cell, x, lens) == "loop"
    y, s = run_layer(cell, x, lens, cell.initial_state(B))
    y_ref, s_ref = run_loop(cell, x, lens, cell.initial_state(B))
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    with pytest.raises(ValueError, match="fused kernel"):
        run_fused_full(cell, x, cell.initial_state(B), False)
    with pytest.raises(ValueError, match="expected an LSTMCell"):
        run_bptt_lstm(cell, x, lens, cell.initial_state(B))


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, options",
    [
        ("lstm", {"forget_bias": 1.0}),
        ("lstm", {"forget_bias": 1.0, "peepholes": True, "cell_clip": 0.5}),
        ("lstm", {"proj_size": 5, "proj_clip": 0.4}),
        ("gru", {}),
        ("gru", {"reset_after": False}),
        ("rnn", {}),
        ("rnn", {"nonlinearity": "relu"}),
    ],
)
def test_export_first_leaves_no_fake_constant_behind(kind, options):
    """A first call under torch.export (fake tensors) must cache nothing a later eager call
    would receive."""
    torch.manual_seed(8)
    stack = StackedRNN(4, [8, 8], cell=kind, **options)
    x = torch.randn(2, 3, 4)
    torch.export.export(stack, (x,))
    torch.export.export(stack, (x, torch.tensor([3, 1])))
    y, state = stack(x)
    assert type(y) is torch.Tensor
    assert all(type(t) is torch.Tensor for t in torch.utils._pytree.tree_leaves(state))
    y_ref = x
    for cell in stack.layers:
        y_ref, _ = run_loop(cell, y_ref, None, cell.initial_state(2))
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)


def test_a_constant_made_under_a_fake_mode_is_not_kept():
    from torch._subclasses.fake_tensor import FakeTensorMode

    cell = RNNCell(F, H)
    with FakeTensorMode(allow_non_fake_inputs=True):
        cell.kernel_spec(torch.float32, torch.device("cpu"))
    zeros = cell.kernel_spec(torch.float32, torch.device("cpu")).fused_weights[3]
    assert type(zeros) is torch.Tensor and zeros.tolist() == [0.0] * H


def test_forget_bias_change_is_seen():
    cell = LSTMCell(F, H, forget_bias=1.0)
    x = torch.randn(B, T, F)
    run_layer(cell, x, None, cell.initial_state(B))
    cell.lstm_options = cell.lstm_options._replace(forget_bias=2.0)
    y, _ = run_layer(cell, x, None, cell.initial_state(B))
    torch.testing.assert_close(y, run_loop(cell, x, None, cell.initial_state(B))[0])


@pytest.mark.parametrize("lengths", [None, [9, 0, 4]], ids=["full", "ragged"])
@pytest.mark.parametrize(
    "name", ["lstm", "lstm-forget-bias", "lstm-peepholes", "gru", "gru-reset-before", "rnn-tanh"]
)
def test_inference_mode_then_training(name, lengths):
    """A first run under inference_mode (lengths made there too: no version counter) works
    and leaves no cached constant or layout that a later training run cannot use."""
    torch.manual_seed(6)
    cell = CELLS[name]()
    x = torch.randn(3, 9, F)  # a shape no other test caches a full-batch layout for
    with torch.inference_mode():
        lens = None if lengths is None else torch.tensor(lengths)
        y, _ = run_layer(cell, x, lens, cell.initial_state(3))
        y_ref, _ = run_loop(cell, x, lens, cell.initial_state(3))
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
    lens = None if lengths is None else torch.tensor(lengths)
    grads = []
    for fn in (run_layer, run_loop):
        y, _ = fn(cell, x, lens, cell.initial_state(3))
        grads.append(torch.autograd.grad(y.sum(), list(cell.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


# ------------------------------------------------------------ through the stack


def test_bidirectional_stack_with_fast_paths_equals_the_loop(monkeypatch):
    torch.manual_seed(5)
    stack = StackedRNN(F, [H, 4], cell="lstm", bidirectional=True, forget_bias=1.0)
    x = torch.randn(B, T, F)
    lens = torch.tensor(LENGTHS)
    y, state = stack(x, lens)
    monkeypatch.setattr("rnnfuse.stack.run_layer", run_loop)
    y_ref, state_ref = stack(x, lens)
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
    for a, b in zip(
        torch.utils._pytree.tree_leaves(state), torch.utils._pytree.tree_leaves(state_ref)
    ):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)
