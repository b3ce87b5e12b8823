"""StackedRNN with bidirectional=[True, False, ...]: per-layer directions (GNMT's encoder)."""

from __future__ import annotations

import pytest
import torch

from rnnfuse import (
    ChildSumFusion,
    GatedFusion,
    MultiEncoder,
    Seq2Seq,
    StackedRNN,
    StateBridge,
    ZophKnightFusion,
    concat_states,
    max_states,
    mean_states,
    sum_states,
)
from rnnfuse.cli import main
from rnnfuse.io import load, save
from rnnfuse.state import (
    BidirectionalState,
    LSTMState,
    flatten_state,
    join_directions,
    state_sizes,
    structure_str,
)


def _mixed(**kw) -> StackedRNN:
    torch.manual_seed(0)
    return StackedRNN(
        3, [4, 4, 4], bidirectional=[True, False, False], residual=[False, False, True], **kw
    )


def test_mixed_stack_equals_its_parts():
    stack = _mixed()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    out, state = stack(x, lengths)
    bottom = StackedRNN.from_cells([stack.layers[0]], backward_cells=[stack.backward_layers[0]])
    top = StackedRNN.from_cells([stack.layers[1], stack.layers[2]], residual=True)
    mid, (pair,) = bottom(x, lengths)
    want, (s1, s2) = top(mid, lengths)
    assert torch.allclose(out, want, atol=1e-6)
    assert isinstance(state[0], BidirectionalState) and isinstance(state[1], LSTMState)
    assert torch.equal(state[0].fw.h, pair.fw.h) and torch.equal(state[0].bw.c, pair.bw.c)
    assert torch.equal(state[2].h, s2.h)
    assert structure_str(stack.state_sizes) != structure_str(bottom.state_sizes)
    assert stack.state_sizes == (
        BidirectionalState(LSTMState(4, 4), LSTMState(4, 4)),
        LSTMState(4, 4),
        LSTMState(4, 4),
    )
    again, _ = stack(x, lengths, state)  # the state goes back in as an initial state
    assert again.shape == out.shape


def test_uniform_and_mixed_stacks_have_one_state_structure():
    """One entry per layer whatever the directions: a BidirectionalState for each
    bidirectional layer, the same for bidirectional=True as for [True, True]."""
    for given in (True, [True, True]):
        bi = StackedRNN(3, [4, 5], bidirectional=given)
        assert bi.bidirectional == (True, True)
        _, state = bi(torch.randn(2, 3, 3))
        assert len(state) == 2 and all(isinstance(s, BidirectionalState) for s in state)
        assert tuple(state[1].bw.h.shape) == (2, 5)
    uni = StackedRNN(3, [4, 5], bidirectional=[False, False])
    assert uni.bidirectional == (False, False) and len(uni(torch.randn(2, 3, 3))[1]) == 2


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
    merged = join_directions(enc(torch.randn(2, 5, 3))[1])
    assert state_sizes(merged)[0] == LSTMState(8, 8)
    encoders = MultiEncoder({"a": enc, "b": other}, fusion="concat")
    fused_sizes = [LSTMState(14, 14), LSTMState(8, 8), LSTMState(8, 8)]
    bridge = StateBridge(fused_sizes, [LSTMState(5, 5)] * 3)
    model = Seq2Seq(encoders, StackedRNN(1, [5, 5, 5]), output_size=1, bridge=bridge)
    y = model(
        {"a": torch.randn(2, 5, 3), "b": torch.randn(2, 7, 2)},
        torch.randn(2, 4, 1),
        start=torch.zeros(2, 1),
    )
    assert y.shape == (2, 4, 1)


# ---------------------------------------------------------------- raw mixed-direction states
# Reference: the pair of a bidirectional layer joined by hand (torch.cat of fw and bw, per
# part), then each module's equation written out with its own weights.


def _raw_states(gru_top: bool = False):
    """Two raw mixed-direction states (layer 0 bidirectional) of two different encoders."""
    torch.manual_seed(1)
    a = StackedRNN(3, [4, 4, 4], bidirectional=[True, False, False], cell="lstm")
    b = StackedRNN(2, [4, 4, 4], bidirectional=[True, False, False], cell="lstm")
    return a(torch.randn(2, 5, 3))[1], b(torch.randn(2, 6, 2))[1]


def _joined_by_hand(state):
    (fw, bw), *rest = state  # a BidirectionalState unpacks as a pair
    return (LSTMState(torch.cat([fw.c, bw.c], -1), torch.cat([fw.h, bw.h], -1)), *rest)


def test_bridge_on_a_raw_mixed_state_joins_its_directions():
    enc = _mixed()
    _, state = enc(torch.randn(2, 5, 3), torch.tensor([5, 2]))
    assert isinstance(state[0], BidirectionalState)
    for input_sizes in (enc.state_sizes, [LSTMState(8, 8), LSTMState(4, 4), LSTMState(4, 4)]):
        bridge = StateBridge(
            input_sizes, [LSTMState(5, 5), LSTMState(3, 3), LSTMState(2, 2)], activation="tanh"
        )
        assert bridge.input_sizes == [LSTMState(8, 8), LSTMState(4, 4), LSTMState(4, 4)]
        got = bridge(state)
        for k, layer in enumerate(_joined_by_hand(state)):
            for part in ("c", "h"):
                lin = bridge.maps[k][part]
                want = torch.tanh(
                    torch.nn.functional.linear(getattr(layer, part), lin.weight, lin.bias)
                )
                assert torch.allclose(getattr(got[k], part), want, atol=1e-6, rtol=0)
        # one source in a list, and the same state through join_directions, give the same numbers
        for again in (bridge([state]), bridge(join_directions(state))):
            assert all(torch.equal(x, y) for x, y in zip(flatten_state(again), flatten_state(got)))


def test_bridge_on_several_raw_mixed_sources_concatenates_the_joined_states():
    a, b = _raw_states()
    bridge = StateBridge(
        [LSTMState(16, 16), LSTMState(8, 8), LSTMState(8, 8)], [LSTMState(3, 3)] * 3
    )
    got = bridge([a, b])
    joined = [_joined_by_hand(a), _joined_by_hand(b)]
    for k in range(3):
        for part in ("c", "h"):
            x = torch.cat([getattr(s[k], part) for s in joined], -1)  # a's fw|bw, then b's fw|bw
            lin = bridge.maps[k][part]
            assert torch.allclose(
                getattr(got[k], part), x @ lin.weight.T + lin.bias, atol=1e-6, rtol=0
            )
    assert all(torch.equal(x, y) for x, y in zip(flatten_state(bridge((a, b))), flatten_state(got)))


def test_parameter_free_fusion_keeps_the_mixed_structure():
    a, b = _raw_states()
    for fuse, ref in (
        (concat_states, lambda x, y: torch.cat([x, y], -1)),
        (sum_states, torch.add),
        (mean_states, lambda x, y: (x + y) / 2),
        (max_states, torch.maximum),
    ):
        got = fuse([a, b])
        assert structure_str(state_sizes(got)) == structure_str(state_sizes(fuse([a, a])))
        assert isinstance(got[0], BidirectionalState) and isinstance(got[0].bw, LSTMState)
        for g, x, y in zip(flatten_state(got), flatten_state(a), flatten_state(b)):
            assert torch.allclose(g, ref(x, y), atol=1e-6, rtol=0)


def test_learned_fusion_joins_each_sources_directions():
    a, b = _raw_states()
    joined = [_joined_by_hand(a), _joined_by_hand(b)]
    sizes = [LSTMState(8, 8), LSTMState(4, 4), LSTMState(4, 4)]
    torch.manual_seed(2)
    zk = ZophKnightFusion(2, sizes)
    got = zk([a, b])
    for k, lin in enumerate(zk.combine):
        h = torch.tanh(torch.cat([s[k].h for s in joined], -1) @ lin.weight.T + lin.bias)
        assert torch.allclose(got[k].h, h, atol=1e-6, rtol=0)
        assert torch.allclose(got[k].c, joined[0][k].c + joined[1][k].c, atol=1e-6, rtol=0)
    for module in (
        ChildSumFusion(2, sizes),
        GatedFusion(2, sizes),
        ZophKnightFusion(2, _mixed().state_sizes),
    ):
        raw, merged = module([a, b]), module(joined)
        assert structure_str(raw) == structure_str(merged)
        assert all(torch.equal(x, y) for x, y in zip(flatten_state(raw), flatten_state(merged)))


def test_seq2seq_and_multiencoder_with_raw_mixed_encoders():
    torch.manual_seed(3)
    enc, other = _mixed(), StackedRNN(2, [6, 4, 4])
    x = {"a": torch.randn(2, 5, 3), "b": torch.randn(2, 7, 2)}
    # fused sizes known at construction: (fw|bw of layer 0) + the other encoder's, per layer
    with pytest.raises(ValueError, match=r"decoder: its initial state must have sizes"):
        Seq2Seq(MultiEncoder({"a": enc, "b": other}), StackedRNN(1, [5, 5, 5]), output_size=1)
    model = Seq2Seq(MultiEncoder({"a": enc, "b": other}), StackedRNN(1, [14, 8, 8]), output_size=1)
    sources = model.encode(x)
    want = concat_states([_joined_by_hand(enc(x["a"])[1]), other(x["b"])[1]])
    assert all(torch.equal(p, q) for p, q in zip(flatten_state(sources.state), flatten_state(want)))
    fused = MultiEncoder({"a": enc, "b": _mixed()}, fusion=GatedFusion(2, enc.state_sizes))(x["a"])
    assert state_sizes(fused.state) == (LSTMState(8, 8), LSTMState(4, 4), LSTMState(4, 4))


def test_malformed_direction_structures_are_refused():
    a, _ = _raw_states()
    bad = ((a[0][0], a[0][1], a[0][0]), a[1], a[2])  # a triple where an (fw, bw) pair belongs
    with pytest.raises(
        ValueError, match=r"state\[0\]: expected a layer state .* or a BidirectionalState"
    ):
        StateBridge([LSTMState(8, 8), LSTMState(4, 4), LSTMState(4, 4)], [LSTMState(2, 2)] * 3)(bad)
    gru = torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"state\[0\]: the two directions differ in kind"):
        join_directions((BidirectionalState(a[0][0], gru), a[1]))
    with pytest.raises(
        ValueError, match=r"states: expected a stack state or a non-empty list of them, got \[\]"
    ):
        StateBridge([LSTMState(8, 8)], [LSTMState(2, 2)])([])
    with pytest.raises(ValueError, match=r"input_sizes: state\[1\]: expected a layer state"):
        StateBridge([LSTMState(4, 4), (1, 2, 3)], [LSTMState(2, 2)] * 2)


def test_per_layer_arguments_are_checked():
    with pytest.raises(
        TypeError, match=r"bidirectional: expected a bool or one bool per layer \(2\)"
    ):
        StackedRNN(3, [4, 4], bidirectional=[True])
    with pytest.raises(ValueError, match="residual: layer 1 reads 8 features and writes 4"):
        StackedRNN(3, [4, 4], bidirectional=[True, False], residual=[False, True])
    with pytest.raises(ValueError, match="not expressible"):
        _mixed().to_torch()
