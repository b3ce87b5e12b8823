"""StackedRNN with bidirectional=[True, False, ...]: per-layer directions (GNMT's encoder)."""

from __future__ import annotations

import pytest
import torch

from rnnfuse import MultiEncoder, Seq2Seq, StackedRNN, StateBridge
from rnnfuse.cli import main
from rnnfuse.encoders import merge_directions
from rnnfuse.io import load, save
from rnnfuse.state import LSTMState, state_sizes, structure_str


def _mixed(**kw) -> StackedRNN:
    torch.manual_seed(0)
    return StackedRNN(3, [4, 4, 4], bidirectional=[True, False, False],
                      residual=[False, False, True], **kw)


def test_mixed_stack_equals_its_parts():
    stack = _mixed()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    out, state = stack(x, lengths)
    bottom = StackedRNN.from_cells([stack.layers[0]], backward_cells=[stack.backward_layers[0]])
    top = StackedRNN.from_cells([stack.layers[1], stack.layers[2]], residual=True)
    mid, (fw, bw) = bottom(x, lengths)
    want, (s1, s2) = top(mid, lengths)
    assert torch.allclose(out, want, atol=1e-6)
    assert torch.equal(state[0][0].h, fw[0].h) and torch.equal(state[0][1].c, bw[0].c)
    assert torch.equal(state[2].h, s2.h)
    assert structure_str(stack.state_sizes) != structure_str(bottom.state_sizes)
    assert stack.state_sizes == ((LSTMState(4, 4), LSTMState(4, 4)), LSTMState(4, 4), LSTMState(4, 4))
    again, _ = stack(x, lengths, state)   # the state goes back in as an initial state
    assert again.shape == out.shape


def test_uniform_stacks_keep_their_state_structure():
    bi = StackedRNN(3, [4, 5], bidirectional=[True, True])
    assert bi.bidirectional is True and not bi.mixed_directions
    _, (fw, bw) = bi(torch.randn(2, 3, 3))
    assert len(fw) == 2 and len(bw) == 2
    uni = StackedRNN(3, [4, 5], bidirectional=[False, False])
    assert uni.bidirectional is False and len(uni(torch.randn(2, 3, 3))[1]) == 2


def test_save_load_and_inspect(tmp_path, capsys):
    stack = _mixed(cell="gru")
    path = tmp_path / "mixed.safetensors"
    save(stack, path)
    again = load(path)
    x = torch.randn(2, 5, 3)
    assert torch.equal(again(x)[0], stack(x)[0])
    assert again.bidirectional == (True, False, False) and again.residual == (False, False, True)
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "layer 0: GRUCell(3, 4) | backward GRUCell(3, 4)" in text and "+ residual" in text


def test_fusion_bridge_and_seq2seq_accept_it():
    enc = _mixed()
    other = StackedRNN(2, [6, 4, 4])
    merged = merge_directions(enc(torch.randn(2, 5, 3))[1], enc.bidirectional)
    assert state_sizes(merged)[0] == LSTMState(8, 8)
    encoders = MultiEncoder({"a": enc, "b": other}, fusion="concat")
    fused_sizes = [LSTMState(14, 14), LSTMState(8, 8), LSTMState(8, 8)]
    bridge = StateBridge(fused_sizes, [LSTMState(5, 5)] * 3)
    model = Seq2Seq(encoders, StackedRNN(1, [5, 5, 5]), output_size=1, bridge=bridge)
    y = model({"a": torch.randn(2, 5, 3), "b": torch.randn(2, 7, 2)}, torch.randn(2, 4, 1),
              start=torch.zeros(2, 1))
    assert y.shape == (2, 4, 1)


def test_per_layer_arguments_are_checked():
    with pytest.raises(TypeError, match=r"bidirectional: expected a bool or one bool per layer \(2\)"):
        StackedRNN(3, [4, 4], bidirectional=[True])
    with pytest.raises(ValueError, match="residual: layer 1 reads 8 features and writes 4"):
        StackedRNN(3, [4, 4], bidirectional=[True, False], residual=[False, True])
    with pytest.raises(ValueError, match="not expressible"):
        _mixed().to_torch()
