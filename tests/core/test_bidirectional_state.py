"""BidirectionalState: one typed shape wherever a pair of directions is meant.

A stack's state has one entry per layer, a bidirectional layer's entry a
``BidirectionalState(fw, bw)`` of layer states; a ``BidirectionalRNN`` returns a
``BidirectionalState`` of its two stacks' states; nothing reads a plain tuple as a pair.
"""

from __future__ import annotations

import pytest
import torch

from rnnfuse import (
    BidirectionalRNN,
    BidirectionalState,
    LSTMState,
    MultiEncoder,
    Seq2Seq,
    StackedRNN,
    StateBridge,
    concat_states,
    max_states,
    mean_states,
    sum_states,
    tf1,
)
from rnnfuse.state import (
    assert_same_structure,
    flatten_state,
    join_directions,
    map_state,
    structure_str,
)

F, B, T = 3, 2, 5


def _gnmt(cell: str = "lstm") -> StackedRNN:
    torch.manual_seed(0)
    return StackedRNN(F, [4, 4, 4], cell, bidirectional=[True, False, False])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_mixed_stacks_state_has_a_bidirectional_state_per_bidirectional_layer(cell):
    stack = _gnmt(cell)
    layer = LSTMState if cell == "lstm" else torch.Tensor
    _, state = stack(torch.randn(B, T, F), [5, 2])
    assert type(state) is tuple and len(state) == 3
    assert type(state[0]) is BidirectionalState
    assert isinstance(state[0].fw, layer) and isinstance(state[0].bw, layer)
    assert isinstance(state[1], layer) and isinstance(state[2], layer)
    # the zero state and the sizes have the same structure
    assert structure_str(stack.initial_state(B)) == structure_str(state)
    assert type(stack.state_sizes[0]) is BidirectionalState


def test_bidirectional_true_gives_the_per_layer_structure_too():
    stack = StackedRNN(F, [4, 3], "gru", bidirectional=True)
    _, state = stack(torch.randn(B, T, F))
    assert [type(s) for s in state] == [BidirectionalState, BidirectionalState]
    assert tuple(state[1].fw.shape) == (B, 3) and tuple(state[1].bw.shape) == (B, 3)
    assert stack.bidirectional == (True, True) and stack.residual == (False, False)


def test_the_pair_of_a_layer_is_its_two_directions_run_alone():
    """Layer 0's fw and bw equal a one-layer bidirectional stack with the same cells."""
    stack = _gnmt()
    x, lengths = torch.randn(B, T, F), torch.tensor([5, 3])
    _, state = stack(x, lengths)
    alone = StackedRNN.from_cells([stack.layers[0]], backward_cells=[stack.backward_layers[0]])
    _, (pair,) = alone(x, lengths)
    for got, want in ((state[0].fw, pair.fw), (state[0].bw, pair.bw)):
        assert torch.equal(got.c, want.c) and torch.equal(got.h, want.h)


def test_per_layer_attributes_are_tuples_of_bool():
    stack = StackedRNN(F, [3, 3, 3], "gru", residual=True)
    assert stack.bidirectional == (False, False, False)
    assert stack.residual == (False, True, True)  # True: every layer after the first
    given = StackedRNN(F, [3, 3], "gru", residual=[True, False], bidirectional=[False, True])
    assert given.residual == (True, False) and given.bidirectional == (False, True)
    for gone in ("layer_directions", "residual_layers", "mixed_directions", "num_directions"):
        assert not hasattr(stack, gone), gone


# ---------------------------------------------------------------- BidirectionalRNN


def test_bidirectional_rnn_returns_a_bidirectional_state_of_two_stacks():
    torch.manual_seed(1)
    fw, bw = StackedRNN(F, [4, 4], "lstm"), StackedRNN(F, [5], "gru")
    model = BidirectionalRNN(fw, bw)
    x, lengths = torch.randn(B, T, F), torch.tensor([5, 2])
    out, state = model(x, lengths)
    assert type(state) is BidirectionalState
    assert len(state.fw) == 2 and isinstance(state.fw[1], LSTMState)
    assert len(state.bw) == 1 and tuple(state.bw[0].shape) == (B, 5)
    want_fw = fw(x, lengths)[1]
    assert all(
        torch.equal(a, b)
        for a, b in zip(flatten_state(state.fw), flatten_state(want_fw), strict=True)
    )
    assert type(model.state_sizes) is BidirectionalState
    assert structure_str(model.initial_state(B)) == structure_str(state)
    # the state goes back in as an initial state; a plain pair does not
    again, _ = model(x, lengths, state)
    assert again.shape == out.shape
    with pytest.raises(TypeError, match=r"initial_state: expected a BidirectionalState\(fw, bw\)"):
        model(x, lengths, (state.fw, state.bw))


def test_tf1_bidirectional_dynamic_rnn_returns_the_pair_typed():
    torch.manual_seed(2)
    x = torch.randn(B, T, F)
    (out_fw, out_bw), state = tf1.bidirectional_dynamic_rnn(
        tf1.BasicLSTMCell(4), tf1.GRUCell(3), x, sequence_length=[5, 3]
    )
    assert type(state) is BidirectionalState
    assert isinstance(state.fw, LSTMState) and tuple(state.bw.shape) == (B, 3)
    fw, bw = state  # TF's pair
    assert fw is state.fw and bw is state.bw


# ---------------------------------------------------------------- fusion and encoders


@pytest.mark.parametrize("fuse", [concat_states, sum_states, mean_states, max_states])
def test_fusing_two_bidirectional_encoders_keeps_the_type(fuse):
    torch.manual_seed(3)
    a = StackedRNN(F, [4, 4], "lstm", bidirectional=[True, False])
    b = StackedRNN(2, [4, 4], "lstm", bidirectional=[True, False])
    sa, sb = a(torch.randn(B, T, F))[1], b(torch.randn(B, 7, 2))[1]
    fused = fuse([sa, sb])
    assert type(fused[0]) is BidirectionalState and isinstance(fused[1], LSTMState)
    # each direction is fused with the same direction of the other source
    one = fuse([(sa[0].bw,), (sb[0].bw,)])[0]
    assert torch.equal(fused[0].bw.c, one.c) and torch.equal(fused[0].bw.h, one.h)


def test_fusing_two_bidirectional_rnns_keeps_the_type():
    torch.manual_seed(4)
    models = [BidirectionalRNN(StackedRNN(F, [4], "gru"), StackedRNN(F, [4], "gru")) for _ in "ab"]
    states = [m(torch.randn(B, T, F))[1] for m in models]
    fused = concat_states(states)
    assert type(fused) is BidirectionalState
    assert torch.equal(fused.bw[0], torch.cat([states[0].bw[0], states[1].bw[0]], -1))


def test_multi_encoder_and_seq2seq_join_each_pair_of_directions():
    torch.manual_seed(5)
    stack = StackedRNN(F, [4, 4], "gru", bidirectional=[True, False])
    pair = BidirectionalRNN(StackedRNN(F, [3, 2], "gru"), StackedRNN(F, [3, 2], "gru"))
    x = torch.randn(B, T, F)
    result = MultiEncoder({"stack": stack, "pair": pair})(x)
    want = concat_states([join_directions(stack(x)[1]), join_directions(pair(x)[1])])
    assert [tuple(s.shape) for s in result.state] == [(B, 14), (B, 8)]
    assert all(torch.equal(p, q) for p, q in zip(result.state, want, strict=True))
    # the fused sizes are known at construction, so a wrong decoder fails there
    encoders = MultiEncoder({"stack": stack, "pair": pair})
    with pytest.raises(ValueError, match="decoder: its initial state must have sizes"):
        Seq2Seq(encoders, StackedRNN(1, [5, 5], "gru"), output_size=1)
    model = Seq2Seq(
        encoders,
        StackedRNN(1, [5, 5], "gru"),
        output_size=1,
        bridge=StateBridge([14, 8], [5, 5]),
    )
    assert model.generate(x, start=torch.zeros(B, 1), steps=3).shape == (B, 3, 1)


# ---------------------------------------------------------------- no structure guessing


def test_a_plain_tuple_of_tuples_is_not_read_as_fw_and_bw():
    fw = (torch.zeros(B, 4), torch.zeros(B, 4))
    bw = (torch.ones(B, 4), torch.ones(B, 4))
    with pytest.raises(ValueError, match=r"state\[0\]: .* a plain tuple is not read as one"):
        join_directions((fw, bw))  # the old (fw_state, bw_state) shape
    with pytest.raises(ValueError, match=r"state\[0\]: .* a plain tuple is not read as one"):
        join_directions(((fw[0], bw[0]), fw[1]))  # the old per-layer pair
    typed = join_directions(BidirectionalState(fw, bw))  # the same data, typed: two stacks
    assert [tuple(s.shape) for s in typed] == [(B, 8), (B, 8)]
    per_layer = join_directions((BidirectionalState(fw[0], bw[0]), fw[1]))
    assert [tuple(s.shape) for s in per_layer] == [(B, 8), (B, 4)]


def test_a_stack_refuses_plain_pairs_as_its_initial_state():
    stack = StackedRNN(F, [4, 4], "gru", bidirectional=[True, False])
    x = torch.randn(B, T, F)
    good = stack.initial_state(B)
    plain = ((good[0].fw, good[0].bw), good[1])
    with pytest.raises(
        ValueError, match=r"differ at state\[0\]: a BidirectionalState against a tuple of 2"
    ):
        stack(x, None, plain)
    old = (tuple(s.fw for s in good[:1]), tuple(s.bw for s in good[:1]))  # (fw, bw) stacks
    with pytest.raises(ValueError, match=r"initial_state: does not match"):
        StackedRNN(F, [4], "gru", bidirectional=True)(x, None, old)


def test_structure_checks_tell_a_pair_from_a_tuple():
    pair = BidirectionalState(torch.zeros(B, 3), torch.zeros(B, 3))
    with pytest.raises(ValueError, match=r"state\[0\]: a BidirectionalState against a tuple of 2"):
        assert_same_structure((pair,), ((pair.fw, pair.bw),))
    with pytest.raises(ValueError, match=r"state\[0\]\.bw: feature size \[3\] against \[4\]"):
        assert_same_structure((pair,), (BidirectionalState(pair.fw, torch.zeros(B, 4)),))
    assert type(map_state(torch.neg, (pair,))[0]) is BidirectionalState


def test_a_bridge_refuses_a_plain_pair_in_a_stack_state():
    a = StackedRNN(F, [4, 4], "gru", bidirectional=[True, False])
    state = a(torch.randn(B, T, F))[1]
    bridge = StateBridge(a.state_sizes, [3, 3])
    assert [tuple(s.shape) for s in bridge(state)] == [(B, 3), (B, 3)]
    with pytest.raises(ValueError, match=r"state\[0\]: .* a plain tuple is not read as one"):
        bridge(((state[0].fw, state[0].bw), state[1]))
    with pytest.raises(ValueError, match=r"input_sizes: state\[0\]: .* a plain tuple"):
        StateBridge(((4, 4), 4), [3, 3])


# ---------------------------------------------------------------- pytrees and export


def test_pytrees_keep_the_type():
    state = _gnmt()(torch.randn(B, T, F))[1]
    mapped = torch.utils._pytree.tree_map(lambda t: t + 1, state)
    assert type(mapped[0]) is BidirectionalState and type(mapped[0].fw) is LSTMState
    assert len(torch.utils._pytree.tree_leaves(state)) == 8


def test_torch_export_returns_the_typed_state():
    stack = _gnmt("gru").eval()
    x, lengths = torch.randn(B, T, F), torch.tensor([5, 3])
    program = torch.export.export(stack, (x, lengths))
    out, state = program.module()(x, lengths)
    eager_out, eager_state = stack(x, lengths)
    assert type(state[0]) is BidirectionalState
    torch.testing.assert_close(out, eager_out)
    for got, want in zip(flatten_state(state), flatten_state(eager_state), strict=True):
        torch.testing.assert_close(got, want)
