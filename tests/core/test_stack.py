"""StackedRNN: NumPy-reference parity, ragged batches, continuation, gradcheck, dropout, residual."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy_reference import max_abs_diff, reference_for, stacked_rnn, state_to_numpy

from rnnfuse import BidirectionalState, GRUCell, LSTMCell, LSTMState, RNNCell, StackedRNN
from rnnfuse.state import flatten_state, map_state

F = 4
LENGTHS = [3, 7, 0, 5]  # unsorted, with a zero and a full length
T = 7


class OwnLSTMCell(LSTMCell):
    """A user's own cell class: the stack cannot assume it is a stock cell (reference loop)."""


class OwnGRUCell(GRUCell):
    """See :class:`OwnLSTMCell`."""


def _stacks() -> dict[str, StackedRNN]:
    """Every cell kind and option family, uni- and bidirectional, plain and mixed."""
    return {
        "lstm": StackedRNN(F, [5, 3], "lstm", forget_bias=1.0),
        "lstm_peep_proj_clip": StackedRNN(
            F, [5, 4], "lstm", peepholes=True, proj_size=3, cell_clip=0.5, proj_clip=0.4
        ),
        "gru_reset_after": StackedRNN(F, [5, 3], "gru"),
        "gru_reset_before": StackedRNN(F, [5, 3], "gru", reset_after=False),
        "rnn_tanh": StackedRNN(F, [5, 3], "rnn"),
        "rnn_relu": StackedRNN(F, [5, 3], "rnn", nonlinearity="relu"),
        "bi_lstm_proj": StackedRNN(F, [4, 3], "lstm", bidirectional=True, proj_size=2),
        "bi_gru": StackedRNN(F, [4, 3, 2], "gru", bidirectional=True),
        "mixed": StackedRNN.from_cells(
            [
                LSTMCell(F, 5, peepholes=True, proj_size=4),
                GRUCell(4, 3, reset_after=False),
                RNNCell(3, 3, nonlinearity="relu"),
            ]
        ),
        "bi_mixed": StackedRNN.from_cells(
            [GRUCell(F, 3), LSTMCell(6, 4, forget_bias=1.0)],
            backward_cells=[RNNCell(F, 3), GRUCell(6, 4, reset_after=False)],
        ),
        # activations other than sigmoid/tanh: the reference loop, also over ragged batches
        "acts": StackedRNN.from_cells(
            [
                LSTMCell(F, 5, recurrent_activation="hard_sigmoid_keras2"),
                GRUCell(5, 3, recurrent_activation="hard_sigmoid", activation="softsign"),
                RNNCell(3, 3, nonlinearity="softsign"),
            ]
        ),
        "bi_acts": StackedRNN(
            F,
            [4, 3],
            "lstm",
            bidirectional=True,
            recurrent_activation="hard_sigmoid",
            activation="relu",
        ),
        # Keras' Bidirectional merges below other layers
        "bi_merges": StackedRNN(
            F, [4, 3, 3, 2], "gru", bidirectional=True, merge_mode=["sum", "ave", "mul", "concat"]
        ),
        "own_cells": StackedRNN.from_cells(
            [OwnLSTMCell(F, 5, proj_size=4, cell_clip=0.5), OwnGRUCell(4, 3, reset_after=False)]
        ),
        "bi_own_cells": StackedRNN.from_cells(
            [OwnLSTMCell(F, 5, peepholes=True, forget_bias=1.0), OwnGRUCell(10, 3)],
            backward_cells=[OwnGRUCell(F, 5, reset_after=False), OwnLSTMCell(10, 6, proj_size=3)],
        ),
    }


STACK_NAMES = sorted(_stacks())


def _stack(name: str) -> StackedRNN:
    return _stacks()[name].double()


def _random_initial(stack: StackedRNN, batch: int, seed: int = 7):
    gen = torch.Generator().manual_seed(seed)
    zero = stack.initial_state(batch, dtype=torch.float64)
    return map_state(lambda t: torch.rand(t.shape, generator=gen, dtype=t.dtype) - 0.5, zero)


def _load_reference(stack: StackedRNN, rng: np.random.Generator):
    fw = [reference_for(c, rng) for c in stack.layers]
    bw = (
        [reference_for(c, rng) for c in stack.backward_layers] if any(stack.bidirectional) else None
    )
    return fw, bw


def _reference_run(stack, fw, bw, x: np.ndarray, initial, lengths):
    init = state_to_numpy(initial)  # per layer; a bidirectional layer's entry is (fw, bw)
    if bw is None:
        return stacked_rnn(fw, x, init, lengths)
    out, (fw_final, bw_final) = stacked_rnn(
        fw, x, [i[0] for i in init], lengths, bw, [i[1] for i in init], stack.merge_modes
    )
    return out, tuple(zip(fw_final, bw_final, strict=True))


# ------------------------------------------------------------------ NumPy reference


@pytest.mark.parametrize("name", STACK_NAMES)
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "ragged"])
def test_stack_matches_numpy_dynamic_rnn_float64(name, lengths, rng):
    stack = _stack(name)
    fw, bw = _load_reference(stack, rng)
    x = rng.uniform(-1, 1, (len(LENGTHS), T, F))
    initial = _random_initial(stack, len(LENGTHS))
    ref_out, ref_state = _reference_run(stack, fw, bw, x, initial, lengths)
    out, state = stack(torch.from_numpy(x), lengths, initial)
    assert out.shape == (len(LENGTHS), T, stack.output_size)
    assert max_abs_diff(out, ref_out) < 1e-12
    assert max_abs_diff(state_to_numpy(state), ref_state) < 1e-12


def test_time_major_input_gives_the_transposed_batch_major_result():
    batch_major = _stack("bi_mixed")
    time_major = StackedRNN.from_cells(
        [GRUCell(F, 3), LSTMCell(6, 4, forget_bias=1.0)],
        backward_cells=[RNNCell(F, 3), GRUCell(6, 4, reset_after=False)],
        batch_first=False,
    ).double()
    time_major.load_state_dict(batch_major.state_dict())
    x = torch.randn(len(LENGTHS), T, F, dtype=torch.float64)
    out_b, state_b = batch_major(x, LENGTHS)
    out_t, state_t = time_major(x.transpose(0, 1), torch.tensor(LENGTHS))
    assert out_t.shape == (T, len(LENGTHS), batch_major.output_size)
    assert torch.equal(out_t.transpose(0, 1), out_b)
    assert max_abs_diff(state_to_numpy(state_t), state_to_numpy(state_b)) == 0.0


# ------------------------------------------------------------------ ragged batches


@pytest.mark.parametrize("name", STACK_NAMES)
def test_ragged_batch_equals_each_sequence_alone(name):
    stack = _stack(name)
    x = torch.randn(len(LENGTHS), T, F, dtype=torch.float64)
    initial = _random_initial(stack, len(LENGTHS))
    out, state = stack(x, LENGTHS, initial)
    for b, n in enumerate(LENGTHS):
        row_initial = map_state(lambda t: t[b : b + 1], initial)
        alone_out, alone_state = stack(x[b : b + 1, :n], None, row_initial)
        assert torch.allclose(out[b, :n], alone_out[0], atol=1e-12, rtol=0)
        assert not out[b, n:].any(), "outputs past a length must be zero"
        row_state = map_state(lambda t: t[b : b + 1], state)
        assert max_abs_diff(state_to_numpy(row_state), state_to_numpy(alone_state)) < 1e-12


@pytest.mark.parametrize(
    "cell, options", [("lstm", {"proj_size": 2}), ("gru", {"reset_after": False}), ("rnn", {})]
)
def test_time_major_ragged_batch_equals_each_sequence_alone(cell, options):
    stack = StackedRNN(F, [3, 3], cell, bidirectional=True, batch_first=False, **options).double()
    x = torch.randn(T, len(LENGTHS), F, dtype=torch.float64)
    out, state = stack(x, LENGTHS)
    assert out.shape == (T, len(LENGTHS), stack.output_size)
    for b, n in enumerate(LENGTHS):
        alone_out, alone_state = stack(x[:n, b : b + 1])
        assert torch.allclose(out[:n, b], alone_out[:, 0], atol=1e-12, rtol=0)
        assert not out[n:, b].any()
        row_state = map_state(lambda t: t[b : b + 1], state)
        assert max_abs_diff(state_to_numpy(row_state), state_to_numpy(alone_state)) < 1e-12


@pytest.mark.parametrize("name", STACK_NAMES)
def test_zero_length_keeps_the_initial_state_and_outputs_zeros(name):
    stack = _stack(name)
    x = torch.randn(3, T, F, dtype=torch.float64)
    initial = _random_initial(stack, 3)
    out, state = stack(x, [4, 0, T], initial)
    assert not out[1].any()
    kept = map_state(lambda t: t[1], state)
    start = map_state(lambda t: t[1], initial)
    assert all(torch.equal(a, b) for a, b in zip(flatten_state(kept), flatten_state(start)))
    moved = map_state(lambda t: t[0], state)
    assert not all(
        torch.equal(a, b)
        for a, b in zip(flatten_state(moved), flatten_state(map_state(lambda t: t[0], initial)))
    )


def test_padding_values_never_reach_outputs_states_or_gradients():
    stack = _stack("bi_mixed")
    x = torch.randn(len(LENGTHS), T, F, dtype=torch.float64)
    noisy = x.clone()
    for b, n in enumerate(LENGTHS):
        noisy[b, n:] = 1e3 * torch.randn(T - n, F, dtype=torch.float64)
    noisy.requires_grad_(True)
    out_clean, state_clean = stack(x, LENGTHS)
    out_noisy, state_noisy = stack(noisy, LENGTHS)
    assert torch.equal(out_clean, out_noisy)
    assert max_abs_diff(state_to_numpy(state_clean), state_to_numpy(state_noisy)) == 0.0
    (out_noisy.sum() + sum(t.sum() for t in flatten_state(state_noisy))).backward()
    for b, n in enumerate(LENGTHS):
        assert not noisy.grad[b, n:].any()
    assert noisy.grad[1, :7].abs().sum() > 0


@pytest.mark.parametrize("name", STACK_NAMES)
def test_non_finite_padding_gives_zero_outputs_like_tf1(name):
    """TF1 ``dynamic_rnn`` selects zeros past a length, whatever the padding holds."""
    stack = _stack(name)
    x = torch.randn(2, T, F, dtype=torch.float64)
    x[0, 3:] = float("nan")
    x[1, 5:] = float("inf")
    x.requires_grad_(True)
    out, state = stack(x, [3, 5])
    assert all(torch.isfinite(t).all() for t in flatten_state(state))
    assert torch.isfinite(out).all()
    assert not out[0, 3:].any() and not out[1, 5:].any()
    (out.sum() + sum(t.sum() for t in flatten_state(state))).backward()
    assert all(torch.isfinite(p.grad).all() for p in stack.parameters()), (
        "padding poisons the gradients"
    )
    assert not x.grad[0, 3:].any() and not x.grad[1, 5:].any()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------ continuation


@pytest.mark.parametrize("name", [n for n in STACK_NAMES if not n.startswith("bi_")])
def test_continuing_from_the_returned_state_equals_the_whole_run(name):
    stack = _stack(name)
    x = torch.randn(len(LENGTHS), T, F, dtype=torch.float64)
    cut = 4
    lens = torch.tensor(LENGTHS)
    whole_out, whole_state = stack(x, lens)
    out1, state1 = stack(x[:, :cut], lens.clamp(max=cut))
    out2, state2 = stack(x[:, cut:], (lens - cut).clamp(min=0), state1)
    assert torch.allclose(torch.cat([out1, out2], dim=1), whole_out, atol=1e-12, rtol=0)
    assert max_abs_diff(state_to_numpy(state2), state_to_numpy(whole_state)) < 1e-12


def test_bidirectional_continuation_holds_for_the_forward_direction_only():
    """Continuation is not defined for a bidirectional stack as a whole.

    The backward direction of the first chunk starts at the chunk's *end*, which is not
    the sequence's end, and its final state is the state at the sequence's *start*: there
    is no state that carries the backward pass from one chunk into the next.  And from the
    second layer on, even the forward direction reads backward outputs, so it depends on
    the future of each chunk.  What is defined, and tested here, is the forward direction
    of a one-layer bidirectional stack: fed its own final state, it continues exactly.
    """
    stack = StackedRNN(F, [5], "lstm", bidirectional=True, peepholes=True).double()
    hidden = 5
    x = torch.randn(len(LENGTHS), T, F, dtype=torch.float64)
    cut, lens = 3, torch.tensor(LENGTHS)
    whole_out, (whole,) = stack(x, lens)
    out1, first = stack(x[:, :cut], lens.clamp(max=cut))
    out2, (second,) = stack(x[:, cut:], (lens - cut).clamp(min=0), first)
    forward = torch.cat([out1, out2], dim=1)[..., :hidden]
    assert torch.allclose(forward, whole_out[..., :hidden], atol=1e-12, rtol=0)
    assert max_abs_diff(state_to_numpy(second.fw), state_to_numpy(whole.fw)) < 1e-12
    backward = torch.cat([out1, out2], dim=1)[..., hidden:]
    assert not torch.allclose(backward, whole_out[..., hidden:], atol=1e-6), (
        "backward really does not continue"
    )


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize(
    "build",
    [
        lambda: StackedRNN(2, [2, 2], "lstm", bidirectional=True, peepholes=True, forget_bias=1.0),
        lambda: StackedRNN.from_cells(
            [GRUCell(2, 2, reset_after=False), LSTMCell(4, 3, proj_size=2)],
            backward_cells=[RNNCell(2, 2), GRUCell(4, 2)],
        ),
    ],
    ids=["bi_lstm", "bi_mixed"],
)
def test_stack_gradcheck_float64_with_lengths(build):
    stack = build().double()
    names = [n for n, _ in stack.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in stack.parameters()]
    x = torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True)
    initial = _random_initial(stack, 3)
    leaves = [t.clone().requires_grad_(True) for t in flatten_state(initial)]
    lengths = [2, 3, 0]

    def rebuild(flat):
        it = iter(flat)
        return map_state(lambda _: next(it), initial)

    def fn(x, *tensors):
        start = rebuild(tensors[: len(leaves)])
        weights = dict(zip(names, tensors[len(leaves) :]))
        out, state = torch.func.functional_call(stack, weights, (x, lengths, start))
        return (out, *flatten_state(state))

    # fast_mode compares random projections u^T J v of both Jacobians: every parameter,
    # the input and the start state are still checked, at a fraction of the full cost.
    assert torch.autograd.gradcheck(fn, (x, *leaves, *params), fast_mode=True)


# ------------------------------------------------------------------ dropout


def _positive_then_identity(dropout: float, variational: bool) -> StackedRNN:
    """Layer 0 gives strictly positive outputs; layer 1 passes its input through unchanged.

    So the stack's output is layer 0's output times the dropout mask applied between them,
    and the mask can be read off as ``train_output / eval_output``.
    """
    first, second = RNNCell(3, 8, nonlinearity="relu"), RNNCell(8, 8, nonlinearity="relu")
    with torch.no_grad():
        first.weight_ih.uniform_(0.1, 1.0)
        first.weight_hh.zero_()
        first.bias.fill_(0.1)
        second.weight_ih.copy_(torch.eye(8))
        second.weight_hh.zero_()
        second.bias.zero_()
    return StackedRNN.from_cells(
        [first, second], dropout=dropout, variational_dropout=variational
    ).double()


@pytest.mark.parametrize("variational", [False, True])
def test_dropout_is_off_in_eval_and_on_in_train(variational):
    stack = StackedRNN(F, [6, 6, 4], "gru", dropout=0.5, variational_dropout=variational).double()
    plain = StackedRNN(F, [6, 6, 4], "gru").double()
    plain.load_state_dict(stack.state_dict())
    x = torch.randn(4, T, F, dtype=torch.float64)
    stack.eval()
    assert torch.equal(stack(x)[0], stack(x)[0])
    assert torch.equal(stack(x)[0], plain(x)[0])
    stack.train()
    first, second = stack(x)[0], stack(x)[0]
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, plain(x)[0])


@pytest.mark.parametrize("name", ["lstm", "lstm_peep_proj_clip", "gru_reset_before", "bi_gru"])
def test_inference_mode_with_lengths_then_training(name):
    """Evaluation under torch.inference_mode with a ragged batch, then training again."""
    stack = _stack(name)
    x = torch.randn(4, T, F, dtype=torch.float64)
    with torch.inference_mode():
        y_inf, _ = stack(x, lengths=LENGTHS)
    y, _ = stack(x, lengths=LENGTHS)
    torch.testing.assert_close(y_inf, y.detach(), atol=1e-12, rtol=1e-12)
    y.sum().backward()
    assert all(p.grad is not None for p in stack.parameters())


def test_dropout_never_touches_the_last_layer():
    stack = StackedRNN(F, [6], "lstm", dropout=0.9).double().train()
    x = torch.randn(4, T, F, dtype=torch.float64)
    assert torch.equal(stack(x)[0], stack.eval()(x)[0])


def test_variational_mask_is_the_same_at_every_time_step():
    stack = _positive_then_identity(0.5, variational=True)
    x = torch.rand(6, T, 3, dtype=torch.float64)
    reference = stack.eval()(x)[0]
    assert (reference > 0).all()
    mask = stack.train()(x)[0] / reference
    assert torch.allclose(mask, mask[:, :1].expand_as(mask), atol=1e-12, rtol=0)
    values = set(torch.round(mask * 1e6).unique().tolist())
    assert values == {0.0, 2e6}, "the mask keeps 1/(1-p) or drops to zero"
    dropped = (mask[:, 0] == 0).float().mean().item()
    assert 0.2 < dropped < 0.8


def test_standard_dropout_mask_changes_across_time_steps():
    stack = _positive_then_identity(0.5, variational=False)
    x = torch.rand(6, T, 3, dtype=torch.float64)
    reference = stack.eval()(x)[0]
    mask = stack.train()(x)[0] / reference
    assert set(torch.round(mask * 1e6).unique().tolist()) == {0.0, 2e6}
    assert not torch.allclose(mask, mask[:, :1].expand_as(mask))


def test_dropout_keeps_padding_zero():
    stack = StackedRNN(F, [6, 6], "lstm", dropout=0.5, variational_dropout=True).double().train()
    out, _ = stack(torch.randn(4, T, F, dtype=torch.float64), LENGTHS)
    for b, n in enumerate(LENGTHS):
        assert not out[b, n:].any()


# ------------------------------------------------------------------ residual


@pytest.mark.parametrize("bidirectional", [False, True])
def test_residual_adds_each_layers_input_from_layer_one_on(bidirectional):
    sizes = [2, 2, 2] if bidirectional else [4, 4, 4]
    stack = StackedRNN(3, sizes, "gru", residual=True, bidirectional=bidirectional).double()
    x = torch.randn(4, T, 3, dtype=torch.float64)
    out, _ = stack(x, LENGTHS)
    layer_in = x
    for k in range(3):
        single = StackedRNN.from_cells(
            [stack.layers[k]], backward_cells=[stack.backward_layers[k]] if bidirectional else None
        )
        layer_out = single(layer_in, LENGTHS)[0]
        layer_in = layer_out + layer_in if k > 0 else layer_out
    assert torch.allclose(out, layer_in, atol=1e-14, rtol=0)
    plain = StackedRNN(3, sizes, "gru", bidirectional=bidirectional).double()
    plain.load_state_dict(stack.state_dict())
    assert not torch.allclose(plain(x, LENGTHS)[0], out)


def test_residual_refuses_layers_whose_sizes_differ():
    with pytest.raises(
        ValueError, match=r"residual: layer 1 reads 4 features and writes 5.*residual=False"
    ):
        StackedRNN(3, [4, 5], "lstm", residual=True)
    with pytest.raises(ValueError, match=r"residual: layer 2 reads 8 features and writes 6"):
        StackedRNN(3, [4, 4, 3], "gru", residual=True, bidirectional=True)


# ------------------------------------------------------------------ construction


def test_sizes_and_initial_state_structure():
    stack = StackedRNN(F, [5, 4], "lstm", bidirectional=True, proj_size=3)
    assert stack.num_layers == 2 and stack.bidirectional == (True, True)
    assert stack.residual == (False, False)
    assert stack.hidden_sizes == (5, 4) and stack.output_size == 6
    assert stack.layers[1].input_size == 6 and stack.backward_layers[1].input_size == 6
    assert stack.state_sizes == (
        BidirectionalState(LSTMState(5, 3), LSTMState(5, 3)),
        BidirectionalState(LSTMState(4, 3), LSTMState(4, 3)),
    )
    state = stack.initial_state(2)
    assert [tuple(s.fw.c.shape) for s in state] == [(2, 5), (2, 4)]
    assert tuple(state[1].bw.h.shape) == (2, 3)
    mixed = _stack("mixed")
    assert mixed.state_sizes == (LSTMState(5, 4), 3, 3) and mixed.output_size == 3


def test_cell_options_reach_every_layer_and_each_layer_owns_its_weights():
    stack = StackedRNN(F, [5, 5, 5], "lstm", bidirectional=True, forget_bias=1.0, peepholes=True)
    cells = list(stack.layers) + list(stack.backward_layers)
    assert all(c.forget_bias == 1.0 and c.peepholes for c in cells)
    pointers = {p.data_ptr() for c in cells for p in c.parameters()}
    assert len(pointers) == sum(1 for c in cells for _ in c.parameters())


def test_an_int_hidden_size_means_one_layer_and_empty_time_is_allowed():
    stack = StackedRNN(F, 3, "rnn")
    assert stack.num_layers == 1
    out, state = stack(torch.randn(2, 0, F))
    assert out.shape == (2, 0, 3) and not state[0].any()


def test_merge_modes_set_the_next_layers_input_size_and_are_checked():
    stack = StackedRNN(F, [4, 3], "lstm", bidirectional=True, merge_mode="mul")
    assert (
        stack.merge_modes == ("mul", "mul")
        and stack.layers[1].input_size == 4
        and stack.output_size == 3
    )
    mixed = StackedRNN(F, [4, 3], "gru", bidirectional=[True, False], merge_mode="ave")
    assert mixed.merge_modes == ("ave", "concat") and mixed.output_size == 3
    with pytest.raises(
        ValueError,
        match=r"merge_mode\[1\]: 'sum' merges two directions, but layer 1 is unidirectional",
    ):
        StackedRNN(F, [4, 3], "gru", bidirectional=[True, False], merge_mode=["concat", "sum"])
    with pytest.raises(
        ValueError,
        match=r"merge_mode: expected one of \['concat', 'sum', 'ave', 'mul'\], got 'max'",
    ):
        StackedRNN(F, [4], "gru", bidirectional=True, merge_mode="max")
    with pytest.raises(
        ValueError, match=r"cells\[1\].input_size: expected 4 \(the output size of layer 0\), got 8"
    ):
        StackedRNN.from_cells(
            [GRUCell(F, 4), GRUCell(8, 3)],
            backward_cells=[GRUCell(F, 4), GRUCell(8, 3)],
            merge_mode="sum",
        )
    with pytest.raises(ValueError, match="PyTorch's bidirectional RNNs concatenate"):
        stack.to_torch()


def test_merge_modes_survive_save_and_load(tmp_path):
    import rnnfuse

    stack = StackedRNN(F, [4, 3], "lstm", bidirectional=True, merge_mode=["ave", "concat"])
    rnnfuse.save(stack, tmp_path / "m.safetensors")
    loaded = rnnfuse.load(tmp_path / "m.safetensors")
    assert loaded.merge_modes == ("ave", "concat")
    x = torch.randn(2, T, F)
    with torch.no_grad():
        assert torch.equal(stack(x)[0], loaded(x)[0])
