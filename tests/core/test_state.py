"""Typed states: structure helpers and the PyTorch / Keras layout conversions."""

from __future__ import annotations

import pytest
import torch

from rnnfuse import (
    BidirectionalState,
    LSTMState,
    assert_same_structure,
    flatten_state,
    from_keras_layout,
    from_torch_layout,
    map_state,
    state_sizes,
    structure_str,
    to_keras_layout,
    to_torch_layout,
    zeros_like_state,
)
from rnnfuse.state import state_kinds


def _mixed(batch: int = 2) -> tuple:
    return (LSTMState(torch.randn(batch, 4), torch.randn(batch, 3)), torch.randn(batch, 5))


def test_lstm_state_field_order_is_c_then_h():
    c, h = torch.zeros(1, 2), torch.ones(1, 2)
    state = LSTMState(c, h)
    assert state.c is c and state.h is h
    assert tuple(state)[0] is c
    assert LSTMState._fields == ("c", "h")


def test_map_state_keeps_structure_and_applies_leafwise():
    a, b = _mixed(), _mixed()
    out = map_state(lambda x, y: x + 2 * y, a, b)
    assert (
        isinstance(out, tuple)
        and isinstance(out[0], LSTMState)
        and isinstance(out[1], torch.Tensor)
    )
    assert torch.equal(out[0].c, a[0].c + 2 * b[0].c)
    assert torch.equal(out[0].h, a[0].h + 2 * b[0].h)
    assert torch.equal(out[1], a[1] + 2 * b[1])


def test_map_state_refuses_mismatched_structures():
    a = _mixed()
    with pytest.raises(
        ValueError, match=r"states\[0\] and states\[1\] differ at state\[1\]: an LSTMState"
    ):
        map_state(torch.add, a, (a[0], a[0]))
    with pytest.raises(TypeError, match="at least one state"):
        map_state(torch.neg)


def test_flatten_state_is_depth_first_c_before_h():
    state = _mixed()
    flat = flatten_state(((state[0],), state))
    assert [t.data_ptr() for t in flat] == [
        t.data_ptr() for t in (state[0].c, state[0].h, state[0].c, state[0].h, state[1])
    ]
    with pytest.raises(TypeError, match="got int"):
        flatten_state((torch.zeros(1), 3))


def test_structure_str_shows_kinds_and_shapes():
    assert structure_str(_mixed()) == "(LSTMState(c=[2, 4], h=[2, 3]), Tensor[2, 5])"
    assert structure_str((torch.zeros(1, 2),)) == "(Tensor[1, 2],)"


@pytest.mark.parametrize(
    "other, where",
    [
        (lambda s: (s[0],), r"state: 2 entries against 1 \(layer counts differ\)"),
        (lambda s: (s[0], LSTMState(s[1], s[1])), r"state\[1\]: an LSTMState against a Tensor"),
        (lambda s: (s[0].h, s[1]), r"state\[0\]: an LSTMState against a Tensor"),
        (lambda s: (LSTMState(s[0].c[:1], s[0].h), s[1]), r"state\[0\]\.c: batch size 2 against 1"),
        (
            lambda s: (LSTMState(s[0].c, s[0].h[:, :2]), s[1]),
            r"state\[0\]\.h: feature size \[3\] against \[2\]",
        ),
        (lambda s: (s[0], s[1].double()), r"state\[1\]: dtype torch.float32 against torch.float64"),
        (lambda s: (s[0], s[1][0]), r"state\[1\]: rank 2 against 1"),
    ],
)
def test_assert_same_structure_names_layer_and_part(other, where):
    state = _mixed()
    with pytest.raises(ValueError, match=where) as info:
        assert_same_structure(state, other(state), names=("left", "right"))
    message = str(info.value)
    assert message.startswith("left and right differ at")
    assert f"left: {structure_str(state)}" in message


def test_assert_same_structure_can_ignore_feature_sizes():
    state = _mixed()
    wider = map_state(lambda t: torch.cat([t, t], dim=-1), state)
    assert_same_structure(state, wider, check_feature_sizes=False)
    with pytest.raises(ValueError, match="feature size"):
        assert_same_structure(state, wider)


def test_zeros_like_state_and_sizes_and_kinds():
    state = (
        LSTMState(torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)),
        torch.randn(2, 5),
    )
    zeros = zeros_like_state(state)
    assert structure_str(zeros) == structure_str(state)
    assert zeros[0].c.dtype == torch.float64 and zeros[1].dtype == torch.float32
    assert not any(t.any() for t in flatten_state(zeros))
    assert state_sizes(state) == (LSTMState(4, 3), 5)
    assert isinstance(state_sizes(state)[0], LSTMState)
    assert state_kinds(state) == ("lstm", "tensor")


def test_torch_layout_matches_what_nn_lstm_returns():
    """Bidirectional layers are interleaved per layer (l0 fw, l0 bw, l1 fw, ...) as in torch."""
    lstm = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, batch_first=True)
    _, (h_n, c_n) = lstm(torch.randn(5, 6, 3))
    state = from_torch_layout(h_n, c_n, bidirectional=True)
    assert all(isinstance(s, BidirectionalState) for s in state)  # a StackedRNN's structure
    assert (
        torch.equal(state[1].fw.h, h_n[2])
        and torch.equal(state[1].bw.c, c_n[3])
        and torch.equal(state[0].bw.h, h_n[1])
    )
    assert state_sizes(state) == (BidirectionalState(LSTMState(4, 2), LSTMState(4, 2)),) * 2
    h_back, c_back = to_torch_layout(state)
    assert torch.equal(h_back, h_n) and torch.equal(c_back, c_n)


def test_torch_layout_round_trip_for_tensor_layers():
    h_n = torch.randn(3, 2, 5)
    state = from_torch_layout(h_n)
    assert len(state) == 3 and torch.equal(state[2], h_n[2])
    assert torch.equal(to_torch_layout(state), h_n)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: to_torch_layout(_mixed()), ValueError, "every layer of one kind"),
        (lambda: to_torch_layout(()), ValueError, r"expected a stack state .*, got \(\)"),
        (
            lambda: to_torch_layout((torch.zeros(2, 3), torch.zeros(2, 4))),
            ValueError,
            r"every layer of one size; got \(Tensor\[2, 3\], Tensor\[2, 4\]\)",
        ),
        (
            lambda: from_torch_layout(torch.zeros(2, 3, 4), torch.zeros(2, 3)),
            ValueError,
            r"c_n: expected shape \[2, 3\] \+ \[H\], got \[2, 3\]",
        ),
        (
            lambda: to_torch_layout(
                (BidirectionalState(torch.zeros(1, 2), torch.zeros(1, 2)), torch.zeros(1, 2))
            ),
            ValueError,
            "every layer bidirectional or none",
        ),
        (
            lambda: to_torch_layout(((torch.zeros(1, 2), torch.zeros(1, 2)),)),
            ValueError,
            r"state\[0\]: expected .* a plain tuple is not read as one",
        ),
        (
            lambda: from_torch_layout(torch.zeros(2, 3)),
            ValueError,
            r"h_n: expected shape \(layers\*directions, B, H\), got \[2, 3\]",
        ),
        (
            lambda: from_torch_layout(torch.zeros(2, 3, 4), torch.zeros(1, 3, 4)),
            ValueError,
            r"c_n: expected shape \[2, 3\]",
        ),
        (
            lambda: from_torch_layout(torch.zeros(3, 1, 4), bidirectional=True),
            ValueError,
            "even first dimension, got 3",
        ),
        (
            lambda: to_keras_layout((torch.zeros(1),)),
            TypeError,
            "expected an LSTMState or a Tensor, got tuple",
        ),
        (
            lambda: from_keras_layout([torch.zeros(1)] * 3),
            ValueError,
            r"expected \[h, c\] or \[h\], got a list of 3",
        ),
    ],
)
def test_layout_conversions_refuse_bad_input(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_keras_layout_is_h_then_c():
    c, h = torch.randn(2, 3), torch.randn(2, 3)
    keras_list = to_keras_layout(LSTMState(c, h))
    assert keras_list[0] is h and keras_list[1] is c
    back = from_keras_layout(keras_list)
    assert isinstance(back, LSTMState) and back.c is c and back.h is h
    assert to_keras_layout(h)[0] is h and from_keras_layout([h]) is h


def test_row_helpers_treat_lstm_and_tensor_layers_alike():
    from rnnfuse.state import concat_layer_states, state_output, state_rows, where_state

    lstm, plain = _mixed(4)
    order = torch.tensor([2, 0, 3, 1])
    for layer in (lstm, plain):
        sorted_ = state_rows(layer, order)
        assert type(sorted_) is type(layer)
        assert torch.equal(flatten_state(sorted_)[0], flatten_state(layer)[0][order])
        back = concat_layer_states([state_rows(layer, slice(1)), state_rows(layer, slice(1, None))])
        assert all(torch.equal(a, b) for a, b in zip(flatten_state(back), flatten_state(layer)))
    assert state_output(lstm) is lstm.h and state_output(plain) is plain
    mask = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    new = zeros_like_state(lstm)
    mixed = where_state(mask, new, lstm)
    assert torch.equal(mixed.c[1], lstm.c[1]) and torch.equal(mixed.h[0], new.h[0])
    stacked = concat_layer_states([lstm, lstm])  # rows; features are fusion.concat_states'
    assert stacked.c.shape == (8, 4) and stacked.h.shape == (8, 3)


def test_layer_parts_round_trip():
    from rnnfuse.state import layer_from_parts, layer_parts

    lstm, plain = _mixed()
    assert list(layer_parts(lstm)) == ["c", "h"] and list(layer_parts(plain)) == ["h"]
    assert layer_from_parts(layer_parts(lstm)) == lstm
    assert layer_from_parts(layer_parts(plain)) is plain


def test_map_state_without_check_trusts_the_caller():
    a = _mixed()
    b = (LSTMState(torch.randn(2, 1), torch.randn(2, 3)), torch.randn(2, 2))
    with pytest.raises(ValueError, match="feature size"):
        map_state(lambda *ts: torch.cat(ts, -1), a, b)
    joined = map_state(lambda *ts: torch.cat(ts, -1), a, b, check=False)
    assert state_sizes(joined) == (LSTMState(5, 6), 7)
