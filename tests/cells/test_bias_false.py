"""Cells without biases (``bias=False``), ``cell_clip=0.0`` and ``dropout=1.0``, as PyTorch/TF do.

``StackedRNN.from_torch`` of an ``nn.LSTM/GRU/RNN(bias=False)`` gives cells with no bias
parameters (not zero trainable ones), on every kernel path (the spec supplies cached zero
constants), with the same outputs and gradients as PyTorch; ``to_torch`` and save/load
round-trip it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnnfuse import StackedRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.io import load, save

TORCH = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


def _torch(kind: str, **kw) -> nn.Module:
    torch.manual_seed(0)
    return TORCH[kind](5, 6, num_layers=2, batch_first=True, bias=False, **kw)


@pytest.mark.parametrize("kind", sorted(TORCH))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_from_torch_keeps_bias_false(kind, bidirectional, tmp_path):
    ref = _torch(kind, bidirectional=bidirectional).double()
    stack = StackedRNN.from_torch(ref)
    count = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in stack.parameters()) == count
    assert not any("bias" in name for name, _ in stack.named_parameters())
    x = torch.randn(3, 7, 5, dtype=torch.float64, requires_grad=True)
    want, _ = ref(x)
    got, _ = stack(x)
    assert torch.allclose(got, want, atol=1e-12)
    g_want = torch.autograd.grad(want.square().sum(), [x, ref.weight_hh_l0])
    g_got = torch.autograd.grad(got.square().sum(), [x, stack.layers[0].weight_hh])
    from rnnfuse.convert._params import to_rnnfuse_gates

    assert torch.allclose(g_got[0], g_want[0], atol=1e-10)
    assert torch.allclose(g_got[1], to_rnnfuse_gates(g_want[1], "torch", kind, 0), atol=1e-10)
    back = stack.to_torch()
    assert back.bias is False and sum(p.numel() for p in back.parameters()) == count
    assert torch.allclose(back(x)[0], want, atol=1e-12)
    save(stack, tmp_path / "s.safetensors")
    again = load(tmp_path / "s.safetensors")
    assert sum(p.numel() for p in again.parameters()) == count
    assert torch.allclose(again(x)[0], want, atol=1e-12)


def test_lstm_380_parameters_stay_380():
    ref = nn.LSTM(4, 8, bias=False)
    assert sum(p.numel() for p in ref.parameters()) == 384
    ref = nn.LSTM(3, 5, num_layers=2, bias=False)  # 4*5*(3+5) + 4*5*(5+5) = 160 + 200
    assert sum(p.numel() for p in StackedRNN.from_torch(ref).parameters()) == 360


@pytest.mark.parametrize(
    "cell",
    [
        lambda: LSTMCell(4, 3, bias=False, forget_bias=1.0),
        lambda: LSTMCell(4, 3, bias=False, peepholes=True, proj_size=2, cell_clip=0.5),
        lambda: GRUCell(4, 3, bias=False, reset_after=False),
        lambda: GRUCell(4, 3, bias=False),
        lambda: RNNCell(4, 3, bias=False, nonlinearity="relu"),
    ],
)
@pytest.mark.parametrize("lengths", [[6, 2, 4], [6, 6, 6]])  # fused-segments/bptt, fused/bptt
def test_every_path_agrees_without_bias(cell, lengths):
    """The fused/BPTT kernels (zero-bias constants) equal the reference loop, with gradients."""
    torch.manual_seed(1)
    stack = StackedRNN.from_cells([cell()]).double()
    x = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor(lengths)
    out, _ = stack(x, lengths)
    assert not any("bias" in n for n, _ in stack.named_parameters())
    g = torch.autograd.grad(out.sum(), x)[0]
    ref_out, ref_g = _reference(stack, x, lengths)
    assert torch.allclose(out, ref_out, atol=1e-12) and torch.allclose(g, ref_g, atol=1e-10)


def _reference(stack, x, lengths):
    """The step-by-step loop of the cell itself (no kernel), TF1 sequence_length semantics."""
    cell = stack.layers[0]
    x = x.detach().clone().requires_grad_(True)
    state = cell.initial_state(x.shape[0], x.device, x.dtype)
    outs = []
    for t in range(x.shape[1]):
        out, new = cell(x[:, t], state)
        live = (t < lengths).to(x.dtype)[:, None]
        state = torch.utils._pytree.tree_map(lambda a, b: live * a + (1 - live) * b, new, state)
        outs.append(out * live)
    out = torch.stack(outs, 1)
    return out.detach(), torch.autograd.grad(out.sum(), x)[0]


def test_cell_clip_zero_clips_at_zero():
    cell = LSTMCell(3, 4, cell_clip=0.0)
    out, state = StackedRNN.from_cells([cell])(torch.randn(2, 5, 3))
    assert torch.equal(state[0].c, torch.zeros(2, 4)) and torch.equal(out, torch.zeros(2, 5, 4))


def test_from_torch_dropout_one_follows_pytorch():
    ref = nn.LSTM(3, 4, num_layers=2, dropout=1.0, batch_first=True)
    stack = StackedRNN.from_torch(ref)
    assert stack.dropout == 1.0 and stack.to_torch().dropout == 1.0
    x = torch.randn(2, 5, 3)
    stack.train()
    ref.train()
    # every first-layer output dropped: the second layer sees zeros in both
    assert torch.allclose(stack(x)[0], ref(x)[0], atol=1e-6)


def test_bias_must_be_bool():
    with pytest.raises(TypeError, match="bias: expected a bool, got 0"):
        LSTMCell(3, 4, bias=0)
