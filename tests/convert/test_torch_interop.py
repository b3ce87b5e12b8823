"""Parity with torch.nn.LSTM / GRU / RNN through StackedRNN.from_torch and .to_torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnfuse import GRUCell, LSTMCell, RNNCell, StackedRNN, from_torch_layout, to_torch_layout
from rnnfuse.state import flatten_state

F, T, B = 3, 6, 4
LENGTHS = [4, 6, 1, 3]  # unsorted
TOLERANCE = {torch.float32: 2e-6, torch.float64: 1e-12}

TORCH_CASES = {
    "lstm_2": (nn.LSTM, dict(hidden_size=5, num_layers=2, batch_first=True)),
    "lstm_bi": (nn.LSTM, dict(hidden_size=4, num_layers=2, bidirectional=True, batch_first=True)),
    "lstm_proj_bi_time_major": (
        nn.LSTM,
        dict(hidden_size=5, num_layers=3, proj_size=3, bidirectional=True, batch_first=False),
    ),
    "lstm_no_bias": (nn.LSTM, dict(hidden_size=4, num_layers=2, bias=False, batch_first=True)),
    "gru_bi": (nn.GRU, dict(hidden_size=4, num_layers=2, bidirectional=True, batch_first=True)),
    "gru_time_major_no_bias": (
        nn.GRU,
        dict(hidden_size=5, num_layers=2, bias=False, batch_first=False),
    ),
    "rnn_relu_bi": (
        nn.RNN,
        dict(
            hidden_size=4, num_layers=2, nonlinearity="relu", bidirectional=True, batch_first=True
        ),
    ),
    "rnn_tanh_3": (nn.RNN, dict(hidden_size=3, num_layers=3, batch_first=False)),
}
CASES = sorted(TORCH_CASES)
DTYPES = [torch.float32, torch.float64]


def _module(name: str, dtype: torch.dtype) -> nn.Module:
    kind, kwargs = TORCH_CASES[name]
    module = kind(F, **kwargs).to(dtype)
    with torch.no_grad():  # biases away from zero so that a lost bias shows
        for pname, p in module.named_parameters():
            if pname.startswith("bias"):
                p.uniform_(-0.5, 0.5)
    return module


def _inputs(module: nn.Module, dtype: torch.dtype):
    """x in the module's layout and a random (h0[, c0]) in torch's layout."""
    x = torch.randn(B, T, F, dtype=dtype)
    if not module.batch_first:
        x = x.transpose(0, 1).contiguous()
    dirs = 2 if module.bidirectional else 1
    out_h = (
        module.proj_size if isinstance(module, nn.LSTM) and module.proj_size else module.hidden_size
    )
    h0 = 0.5 * torch.randn(module.num_layers * dirs, B, out_h, dtype=dtype)
    if isinstance(module, nn.LSTM):
        return x, (
            h0,
            0.5 * torch.randn(module.num_layers * dirs, B, module.hidden_size, dtype=dtype),
        )
    return x, h0


def _to_ours(module: nn.Module, hx):
    pair = hx if isinstance(hx, tuple) else (hx, None)
    return from_torch_layout(*pair, bidirectional=module.bidirectional)


def _max_err(a, b) -> float:
    fa = flatten_state(a) if isinstance(a, tuple) else [a]
    fb = flatten_state(b) if isinstance(b, tuple) else [b]
    assert [t.shape for t in fa] == [t.shape for t in fb]
    return max(float((x - y).detach().abs().max()) for x, y in zip(fa, fb))


def _run_packed(module: nn.Module, x, hx, lengths):
    packed = pack_padded_sequence(
        x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False
    )
    out, h_n = module(packed, hx)
    padded, _ = pad_packed_sequence(out, batch_first=module.batch_first, total_length=T)
    return padded, h_n


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", CASES)
def test_from_torch_matches_full_length(name, dtype):
    module = _module(name, dtype)
    stack = StackedRNN.from_torch(module)
    assert stack.batch_first == module.batch_first
    assert stack.bidirectional == (module.bidirectional,) * module.num_layers
    x, hx = _inputs(module, dtype)
    ref_out, ref_h = module(x, hx)
    out, state = stack(x, initial_state=_to_ours(module, hx))
    assert out.dtype == dtype
    assert _max_err(out, ref_out) < TOLERANCE[dtype]
    assert _max_err(to_torch_layout(state), ref_h) < TOLERANCE[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", CASES)
def test_from_torch_matches_packed_ragged_batch(name, dtype):
    module = _module(name, dtype)
    stack = StackedRNN.from_torch(module)
    x, hx = _inputs(module, dtype)
    ref_out, ref_h = _run_packed(module, x, hx, LENGTHS)
    out, state = stack(x, LENGTHS, _to_ours(module, hx))
    assert _max_err(out, ref_out) < TOLERANCE[dtype]
    assert _max_err(to_torch_layout(state), ref_h) < TOLERANCE[dtype]


def _param_pairs(stack: StackedRNN, module: nn.Module):
    """(ours, torch's) parameter pairs; rnnfuse's one LSTM/RNN bias is b_ih + b_hh."""
    directions = [stack.layers] + ([stack.backward_layers] if any(stack.bidirectional) else [])
    for d, cells in enumerate(directions):
        for k, cell in enumerate(cells):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            yield cell.weight_ih, getattr(module, "weight_ih" + sfx)
            yield cell.weight_hh, getattr(module, "weight_hh" + sfx)
            if getattr(module, "weight_hr" + sfx, None) is not None:
                yield cell.weight_hr, getattr(module, "weight_hr" + sfx)
            if not module.bias:
                continue
            if isinstance(cell, GRUCell):
                yield cell.bias_ih, getattr(module, "bias_ih" + sfx)
                yield cell.bias_hh, getattr(module, "bias_hh" + sfx)
            else:
                yield cell.bias, getattr(module, "bias_ih" + sfx)
                yield cell.bias, getattr(module, "bias_hh" + sfx)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", CASES)
def test_parameter_and_input_gradients_match_torch(name, dtype):
    module = _module(name, dtype)
    stack = StackedRNN.from_torch(module)
    x, hx = _inputs(module, dtype)
    x_ref, x_ours = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ref_out, ref_h = _run_packed(module, x_ref, hx, LENGTHS)
    out, state = stack(x_ours, LENGTHS, _to_ours(module, hx))
    ours_h = to_torch_layout(state)
    weights = torch.randn_like(out)
    loss_terms = lambda o, h: (
        (o * weights).sum() + sum((t * t).sum() for t in (h if isinstance(h, tuple) else (h,)))
    )
    loss_terms(ref_out, ref_h).backward()
    loss_terms(out, ours_h).backward()
    scale = {torch.float32: 1e-4, torch.float64: 1e-11}[dtype]
    assert float((x_ours.grad - x_ref.grad).abs().max()) < scale
    pairs = list(_param_pairs(stack, module))
    assert len({id(p) for p, _ in pairs}) == sum(1 for _ in stack.parameters()) or not module.bias
    for ours, ref in pairs:
        assert ref.grad is not None and ref.grad.abs().sum() > 0
        assert float((ours.grad - ref.grad).abs().max()) < scale


@pytest.mark.parametrize("name", CASES)
def test_to_torch_gives_the_same_numbers(name):
    native = StackedRNN.from_torch(_module(name, torch.float64))
    with torch.no_grad():  # new weights, so the test does not just undo from_torch
        for p in native.parameters():
            p.uniform_(-0.6, 0.6)
    module = native.to_torch()
    assert type(module) is TORCH_CASES[name][0]
    assert module.batch_first == native.batch_first and module.num_layers == native.num_layers
    x, hx = _inputs(module, torch.float64)
    ref_out, ref_h = _run_packed(module, x, hx, LENGTHS)
    out, state = native(x, LENGTHS, _to_ours(module, hx))
    assert _max_err(out, ref_out) < 1e-12
    assert _max_err(to_torch_layout(state), ref_h) < 1e-12


def test_to_torch_folds_the_run_time_forget_bias_into_a_bias():
    stack = StackedRNN(F, [4, 4], "lstm", forget_bias=1.0, bidirectional=True).double()
    module = stack.to_torch()
    x = torch.randn(B, T, F, dtype=torch.float64)
    out, state = stack(x)
    ref_out, (h_n, c_n) = module(x)
    assert _max_err(out, ref_out) < 1e-12
    assert _max_err(to_torch_layout(state), (h_n, c_n)) < 1e-12
    assert torch.equal(module.bias_hh_l1_reverse[4:8], torch.ones(4, dtype=torch.float64))


def test_to_torch_and_back_keeps_dropout_and_layout():
    stack = StackedRNN(F, [4, 4], "gru", dropout=0.25, batch_first=False)
    module = stack.to_torch()
    assert module.dropout == 0.25 and module.batch_first is False
    again = StackedRNN.from_torch(module)
    assert again.dropout == 0.25 and again.batch_first is False and not again.variational_dropout


@pytest.mark.parametrize(
    "build, reason",
    [
        (lambda: StackedRNN(F, [4, 3], "lstm"), r"different sizes \[4, 3\]"),
        (
            lambda: StackedRNN(F, [4, 4], "gru", reset_after=False),
            r"resets after the hidden matmul; this GRU \(reset_after=False\) resets before",
        ),
        (
            lambda: StackedRNN(F, [4], "lstm", peepholes=True),
            "no peepholes, cell_clip or proj_clip",
        ),
        (lambda: StackedRNN(F, [4], "lstm", cell_clip=3.0), "no peepholes, cell_clip or proj_clip"),
        (
            lambda: StackedRNN(F, [4], "lstm", proj_size=2, proj_clip=1.0),
            "no peepholes, cell_clip or proj_clip",
        ),
        (
            lambda: StackedRNN.from_cells([LSTMCell(F, 4), GRUCell(4, 4)]),
            r"mixes cell kinds \['gru', 'lstm'\]",
        ),
        (
            lambda: StackedRNN.from_cells([RNNCell(F, 4), RNNCell(4, 4, nonlinearity="relu")]),
            "different options",
        ),
        (lambda: StackedRNN(F, [4, 4], "rnn", residual=True), "no residual connections"),
        (
            lambda: StackedRNN(F, [4, 4], "rnn", dropout=0.1, variational_dropout=True),
            "no variational dropout",
        ),
    ],
)
def test_to_torch_refuses_what_torch_cannot_express(build, reason):
    with pytest.raises(
        ValueError, match=r"stack: not expressible as one torch.nn RNN module: .*" + reason
    ):
        build().to_torch()


def test_from_torch_refuses_other_modules():
    with pytest.raises(TypeError, match="module: expected torch.nn.LSTM, GRU or RNN, got Linear"):
        StackedRNN.from_torch(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="got LSTMCell"):
        StackedRNN.from_torch(nn.LSTMCell(2, 2))
