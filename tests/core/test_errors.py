"""Bad input gets a ValueError/TypeError naming the argument, what was expected and what came."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnfuse import (
    ChildSumFusion,
    GatedFusion,
    GRUCell,
    LSTMCell,
    LSTMState,
    RNNCell,
    StackedRNN,
    StateBridge,
    ZophKnightFusion,
    concat_outputs,
    concat_states,
    max_states,
    mean_states,
    sum_states,
)
from rnnfuse.cells import make_cell

F = 4


def _lstm_gru() -> StackedRNN:
    return StackedRNN.from_cells([LSTMCell(F, 5), GRUCell(5, 3)])


# ------------------------------------------------------------------ x


@pytest.mark.parametrize(
    "x, error, message",
    [
        (
            torch.zeros(2, F),
            ValueError,
            r"x: expected a 3-D tensor of shape \(B, T, F\), got rank 2 with shape \[2, 4\]",
        ),
        (torch.zeros(1, 2, 3, F), ValueError, r"x: expected a 3-D tensor .* got rank 4"),
        (
            torch.zeros(2, 3, F + 1),
            ValueError,
            r"x: x.size\(-1\) must be equal to input_size. Expected 4, got 5",
        ),
        (
            torch.zeros(2, 3, F, dtype=torch.int64),
            TypeError,
            r"x: expected a floating-point tensor, got dtype torch.int64",
        ),
        (np.zeros((2, 3, F)), TypeError, r"x: expected a Tensor of shape \(B, T, F\), got ndarray"),
    ],
)
def test_bad_x(x, error, message):
    with pytest.raises(error, match=message):
        _lstm_gru()(x)


def test_x_of_another_dtype_than_the_parameters():
    with pytest.raises(
        TypeError,
        match=r"x: expected dtype torch.float32 \(the stack's parameters\), got torch.float64",
    ):
        _lstm_gru()(torch.zeros(2, 3, F, dtype=torch.float64))


def test_bad_x_time_major_names_its_layout():
    stack = StackedRNN(F, [3], "gru", batch_first=False)
    with pytest.raises(ValueError, match=r"x: expected a 3-D tensor of shape \(T, B, F\)"):
        stack(torch.zeros(3, F))


def test_cell_step_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"x: expected shape \(B, 4\), got \[2, 5\]"):
        LSTMCell(F, 3)(torch.zeros(2, 5))


# ------------------------------------------------------------------ lengths


@pytest.mark.parametrize(
    "lengths, error, message",
    [
        ([3, -1], ValueError, r"lengths: expected values in \[0, 3\], got a negative length -1"),
        (
            torch.tensor([4, 1]),
            ValueError,
            r"lengths: expected values in \[0, 3\] \(the number of time steps\), got 4",
        ),
        ([2.0, 1.0], TypeError, r"lengths: expected integers, got 2.0 \(float\)"),
        (
            torch.tensor([2.0, 1.0]),
            TypeError,
            r"lengths: expected an integer dtype, got torch.float32",
        ),
        (np.array([2.0, 1.0]), TypeError, r"lengths: expected an integer dtype, got torch.float64"),
        ([True, False], TypeError, r"lengths: expected integers, got True \(bool\)"),
        (
            torch.tensor([True, True]),
            TypeError,
            r"lengths: expected an integer dtype, got torch.bool",
        ),
        (
            [3, 2, 1],
            ValueError,
            r"lengths: expected one length per sequence, shape \(2,\), got shape \[3\]",
        ),
        (
            torch.tensor([[3, 2]]),
            ValueError,
            r"lengths: expected one length per sequence, shape \(2,\), got shape \[1, 2\]",
        ),
        (
            torch.tensor(3),
            ValueError,
            r"lengths: expected one length per sequence, shape \(2,\), got shape \[\]",
        ),
        (3, TypeError, r"lengths: expected a Tensor or a sequence of ints, got int"),
        ("32", TypeError, r"lengths: expected a Tensor or a sequence of ints, got str"),
    ],
)
def test_bad_lengths(lengths, error, message):
    with pytest.raises(error, match=message):
        _lstm_gru()(torch.zeros(2, 3, F), lengths)


@pytest.mark.parametrize(
    "lengths",
    [[3, 1], (0, 2), np.array([1, 3], dtype=np.int32), torch.tensor([2, 2], dtype=torch.int16)],
)
def test_good_lengths_of_every_integer_kind_are_accepted(lengths):
    out, _ = _lstm_gru()(torch.zeros(2, 3, F), lengths)
    assert out.shape == (2, 3, 3)


# ------------------------------------------------------------------ initial_state


def _state(batch=2, dtype=torch.float32):
    return (
        LSTMState(torch.zeros(batch, 5, dtype=dtype), torch.zeros(batch, 5, dtype=dtype)),
        torch.zeros(batch, 3, dtype=dtype),
    )


@pytest.mark.parametrize(
    "initial, where",
    [
        (lambda s: (s[0].h, s[1]), r"state\[0\]: an LSTMState against a Tensor"),
        (lambda s: (s[0], LSTMState(s[1], s[1])), r"state\[1\]: an LSTMState against a Tensor"),
        (lambda s: (s[0],), r"state: 2 entries against 1 \(layer counts differ\)"),
        (lambda s: (s[0], s[1], s[1]), r"state: 2 entries against 3 \(layer counts differ\)"),
        (lambda s: (LSTMState(s[0].c[:1], s[0].h), s[1]), r"state\[0\]\.c: batch size 2 against 1"),
        (
            lambda s: (LSTMState(s[0].c, torch.zeros(2, 4)), s[1]),
            r"state\[0\]\.h: feature size \[5\] against \[4\]",
        ),
        (lambda s: (s[0], s[1].double()), r"state\[1\]: dtype torch.float32 against torch.float64"),
    ],
)
def test_initial_state_of_the_wrong_structure_names_layer_and_part(initial, where):
    with pytest.raises(ValueError, match=where) as info:
        _lstm_gru()(torch.zeros(2, 3, F), initial_state=initial(_state()))
    assert "expected initial_state: (LSTMState(c=[2, 5], h=[2, 5]), Tensor[2, 3])" in str(
        info.value
    )


def test_initial_state_that_is_not_a_tuple():
    with pytest.raises(
        TypeError,
        match=r"initial_state: expected \(LSTMState\(c=\[2, 5\], h=\[2, 5\]\), Tensor\[2, 3\]\), got Tensor",
    ):
        _lstm_gru()(torch.zeros(2, 3, F), initial_state=torch.zeros(2, 5))


def test_bidirectional_initial_state_must_hold_a_bidirectional_state_per_layer():
    stack = StackedRNN(F, [3], "gru", bidirectional=True)
    with pytest.raises(
        ValueError, match=r"differ at state\[0\]: a BidirectionalState against a tuple of 2"
    ) as info:  # a plain (fw, bw) pair is not read as one
        stack(torch.zeros(2, 3, F), initial_state=((torch.zeros(2, 3), torch.zeros(2, 3)),))
    assert (
        r"expected initial_state: (BidirectionalState(fw=Tensor[2, 3], bw=Tensor[2, 3]),)"
        in str(info.value)
    )
    start = StackedRNN(F, [3, 3], "lstm", bidirectional=True).initial_state(2)
    bad = (start[0], start[1]._replace(bw=start[1].bw._replace(h=torch.zeros(2, 2))))
    with pytest.raises(
        ValueError, match=r"differ at state\[1\]\.bw\.h: feature size \[3\] against \[2\]"
    ):
        StackedRNN(F, [3, 3], "lstm", bidirectional=True)(torch.zeros(2, 3, F), initial_state=bad)


# ------------------------------------------------------------------ building stacks


def test_the_same_cell_in_two_layers_is_refused_with_the_fix():
    cell = GRUCell(F, F)
    with pytest.raises(ValueError) as info:
        StackedRNN.from_cells([cell, GRUCell(F, F), cell])
    message = str(info.value)
    assert "cells[0] and cells[2] are the same GRUCell object" in message
    assert "MultiRNNCell([cell] * n)" in message
    assert "Build a fresh cell per layer, e.g. [GRUCell(...) for _ in range(n)]" in message


def test_the_same_cell_forward_and_backward_is_refused():
    cell = LSTMCell(F, 3)
    with pytest.raises(
        ValueError, match=r"cells\[0\] and backward_cells\[0\] are the same LSTMCell object"
    ):
        StackedRNN.from_cells([cell], backward_cells=[cell])


@pytest.mark.parametrize(
    "cells, backward, message",
    [
        (
            [LSTMCell(F, 8), GRUCell(5, 3)],
            None,
            r"cells\[1\].input_size: expected 8 \(the output size of layer 0\), got 5",
        ),
        (
            [LSTMCell(F, 8, proj_size=3), GRUCell(8, 3)],
            None,
            r"cells\[1\].input_size: expected 3 \(the output size of layer 0\), got 8",
        ),
        (
            [GRUCell(F, 3), GRUCell(3, 3)],
            [GRUCell(F, 3), GRUCell(3, 3)],
            r"cells\[1\].input_size: expected 6 \(the output size of layer 0 times 2 directions\), got 3",
        ),
        (
            [GRUCell(F, 3)],
            [GRUCell(F, 3), GRUCell(6, 3)],
            r"backward_cells: expected one cell per layer \(1\), got 2",
        ),
        (
            [GRUCell(F, 3)],
            [GRUCell(F, 4)],
            r"backward_cells\[0\]: expected input 4 and output 3 like cells\[0\], got input 4 and output 4",
        ),
        (
            [GRUCell(F, 3)],
            [GRUCell(F + 1, 3)],
            r"backward_cells\[0\]: expected input 4 and output 3 like cells\[0\], got input 5",
        ),
        ([], None, "cells: expected at least one cell, got an empty list"),
    ],
)
def test_from_cells_refuses_inconsistent_sizes(cells, backward, message):
    with pytest.raises(ValueError, match=message):
        StackedRNN.from_cells(cells, backward_cells=backward)


def test_from_cells_refuses_other_modules():
    with pytest.raises(
        TypeError,
        match=r"cells\[1\]: expected an rnnfuse cell \(LSTMCell, GRUCell, RNNCell\), got GRUCell",
    ):
        StackedRNN.from_cells([GRUCell(F, 3), torch.nn.GRUCell(3, 3)])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            dict(hidden_sizes=[]),
            TypeError,
            r"hidden_sizes: expected an int or a non-empty list of ints, got \[\]",
        ),
        (
            dict(hidden_sizes="32"),
            TypeError,
            r"hidden_sizes: expected an int or a non-empty list of ints, got '32'",
        ),
        (dict(hidden_sizes=[4, 0]), ValueError, r"hidden_size: expected a positive int, got 0"),
        (dict(hidden_sizes=[4, 2.5]), TypeError, r"hidden_size: expected a positive int, got 2.5"),
        # dropout=1.0 is accepted, as torch.nn.LSTM accepts it (from_torch keeps it)
        (
            dict(hidden_sizes=[4], dropout=1.5),
            ValueError,
            r"dropout: expected a probability in \[0, 1\] \(as torch.nn.LSTM\), got 1.5",
        ),
        (
            dict(hidden_sizes=[4], dropout=-0.1),
            ValueError,
            r"dropout: expected a probability in \[0, 1\] \(as torch.nn.LSTM\), got -0.1",
        ),
        (
            dict(hidden_sizes=[4], cell="lstmm"),
            ValueError,
            r"cell: expected one of \['gru', 'lstm', 'rnn'\], got 'lstmm'",
        ),
        (
            dict(hidden_sizes=[4], cell="gru", peepholes=True),
            TypeError,
            r"cell options for 'gru': .*peepholes",
        ),
    ],
)
def test_stack_constructor_refuses_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        StackedRNN(F, **kwargs)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: LSTMCell(0, 3), ValueError, r"input_size: expected a positive int, got 0"),
        (lambda: LSTMCell(F, True), TypeError, r"hidden_size: expected a positive int, got True"),
        (
            lambda: LSTMCell(F, 3, forget_bias="1"),
            TypeError,
            r"forget_bias: expected a float, got '1'",
        ),
        (
            lambda: LSTMCell(F, 3, proj_size=0),
            ValueError,
            r"proj_size: expected a positive int, got 0",
        ),
        (
            lambda: LSTMCell(F, 3, proj_clip=1.0),
            ValueError,
            r"proj_clip: clips the projection, so it needs proj_size",
        ),
        (
            lambda: LSTMCell(F, 3, cell_clip=-1.0),
            ValueError,
            r"cell_clip: expected a positive float or None, got -1.0",
        ),
        (
            lambda: LSTMCell(F, 3, cell_clip="big"),
            TypeError,
            r"cell_clip: expected a positive float or None, got 'big'",
        ),
        (lambda: GRUCell(F, 3, reset_after=1), TypeError, r"reset_after: expected a bool, got 1"),
        (
            lambda: RNNCell(F, 3, nonlinearity="softmax"),
            ValueError,
            r"nonlinearity: expected one of \[.*'relu'.*'tanh'\], got 'softmax'",
        ),
        (lambda: make_cell("rnn", F, 3, forget_bias=1.0), TypeError, r"cell options for 'rnn'"),
    ],
)
def test_cell_constructors_refuse_bad_arguments(build, error, message):
    with pytest.raises(error, match=message):
        build()


# ------------------------------------------------------------------ fusion


def _lstm_layer(batch=2, c=4, h=4, dtype=torch.float32):
    return LSTMState(torch.zeros(batch, c, dtype=dtype), torch.zeros(batch, h, dtype=dtype))


@pytest.mark.parametrize("fuse", [concat_states, sum_states, mean_states, max_states])
@pytest.mark.parametrize(
    "other, where",
    [
        (
            lambda: (torch.zeros(2, 4), torch.zeros(2, 3)),
            r"states\[0\] and states\[1\] differ at state\[0\]: an LSTMState against a Tensor",
        ),
        (lambda: (_lstm_layer(),), r"differ at state: 2 entries against 1 \(layer counts differ\)"),
        (
            lambda: (_lstm_layer(batch=3), torch.zeros(3, 3)),
            r"differ at state\[0\]\.c: batch size 2 against 3",
        ),
        (
            lambda: (_lstm_layer(), torch.zeros(2, 3, dtype=torch.float64)),
            r"differ at state\[1\]: dtype torch.float32 against torch.float64",
        ),
    ],
)
def test_fusing_mismatched_states_names_layer_and_part(fuse, other, where):
    with pytest.raises(ValueError, match=where) as info:
        fuse([(_lstm_layer(), torch.zeros(2, 3)), other()])
    assert "states[0]: (LSTMState(c=[2, 4], h=[2, 4]), Tensor[2, 3])" in str(info.value)


@pytest.mark.parametrize("fuse", [sum_states, mean_states, max_states])
def test_elementwise_fusion_needs_equal_sizes(fuse):
    with pytest.raises(
        ValueError, match=r"differ at state\[0\]\.h: feature size \[4\] against \[5\]"
    ):
        fuse([(_lstm_layer(),), (_lstm_layer(h=5),)])


@pytest.mark.parametrize("fuse", [concat_states, sum_states, mean_states, max_states])
def test_fusion_needs_two_or_more_states_in_a_list(fuse):
    state = (_lstm_layer(),)
    with pytest.raises(
        ValueError, match=r"states: expected 2 or more states \(one per source\), got 1"
    ):
        fuse([state])
    with pytest.raises(
        TypeError,
        match=r"states: expected a list of 2 or more states \(one per source\), got LSTMState",
    ):
        fuse(state[0])
    with pytest.raises(TypeError, match=r"got Tensor"):
        fuse(torch.zeros(2, 2, 3))


@pytest.mark.parametrize(
    "outputs, lengths, message",
    [
        ([torch.zeros(2, 3, 4)], None, r"outputs: expected a list of 2 or more tensors"),
        (
            [torch.zeros(2, 3, 4), torch.zeros(2, 4)],
            None,
            r"outputs\[1\]: expected a tensor \(B, T, H\), got shape \[2, 4\]",
        ),
        (
            [torch.zeros(2, 3, 4), torch.zeros(2, 5, 4)],
            None,
            r"outputs\[1\]: expected batch and time \[2, 3\] like outputs\[0\], got \[2, 5\]",
        ),
        (
            [torch.zeros(2, 3, 4), torch.zeros(2, 3, 4).double()],
            None,
            r"outputs\[1\]: dtype/device torch.float64/cpu differ",
        ),
        (
            [torch.zeros(2, 3, 4)] * 2,
            [[3, 3], [3, 3], [3, 3]],
            r"lengths: expected one entry per output \(2\), got 3",
        ),
        ([torch.zeros(2, 3, 4)] * 2, [4, 1], r"lengths: expected values in \[0, 3\]"),
    ],
)
def test_concat_outputs_refuses_bad_input(outputs, lengths, message):
    with pytest.raises(ValueError, match=message):
        concat_outputs(outputs, lengths)


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: ZophKnightFusion(1, [4]), ValueError, r"num_sources: expected an int >= 2, got 1"),
        (
            lambda: GatedFusion(True, [4]),
            ValueError,
            r"num_sources: expected an int >= 2, got True",
        ),
        (lambda: ZophKnightFusion(2, []), TypeError, r"sizes: expected one entry per layer"),
        (
            lambda: ZophKnightFusion(2, [4, 0]),
            ValueError,
            r"sizes\[1\]: expected a positive int or LSTMState of positive ints, got 0",
        ),
        (
            lambda: ChildSumFusion(2, [4]),
            ValueError,
            r"sizes\[0\]: ChildSumFusion gates LSTM cell states and needs LSTMState\(c=H, h=H\), got 4",
        ),
        (
            lambda: ChildSumFusion(2, [LSTMState(4, 3)]),
            ValueError,
            r"needs LSTMState\(c=H, h=H\), got LSTMState\(c=4, h=3\)",
        ),
        (
            lambda: StateBridge([4, 4], [4]),
            ValueError,
            r"output_sizes: expected 2 layers like input_sizes, got 1",
        ),
        (
            lambda: StateBridge([LSTMState(4, 4)], [4]),
            ValueError,
            r"output_sizes\[0\]: layer 0 is an LSTM state in input_sizes but 4",
        ),
        (
            lambda: StateBridge([4], [4], activation="sigmoid"),
            ValueError,
            r"activation: expected None, 'tanh' or 'relu', got 'sigmoid'",
        ),
    ],
)
def test_fusion_modules_refuse_bad_construction(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize("module", [ZophKnightFusion, ChildSumFusion, GatedFusion])
def test_fusion_modules_refuse_states_they_were_not_built_for(module):
    fusion = module(2, [LSTMState(4, 4)])
    state = (_lstm_layer(),)
    with pytest.raises(
        ValueError,
        match=rf"{module.__name__}: expected 2 states \(num_sources=2, as built\), got 3",
    ):
        fusion([state, state, state])
    with pytest.raises(ValueError, match=r"states: expected 2 or more states"):
        fusion([state])
    wide = (_lstm_layer(c=5, h=5),)
    with pytest.raises(
        ValueError,
        match=rf"{module.__name__}: states\[0\] has sizes \(LSTMState\(c=5, h=5\),\), expected \(LSTMState\(c=4, h=4\),\)",
    ):
        fusion([wide, wide])
    with pytest.raises(
        ValueError, match=r"states\[0\] and states\[1\] differ at state\[0\]\.c: feature size"
    ):
        fusion([state, wide])


def test_state_bridge_refuses_states_of_other_sizes():
    bridge = StateBridge([LSTMState(8, 8)], [LSTMState(3, 3)])
    with pytest.raises(
        ValueError,
        match=r"StateBridge: states\[0\] has sizes \(LSTMState\(c=4, h=4\),\), expected \(LSTMState\(c=8, h=8\),\)",
    ):
        bridge((_lstm_layer(),))
    with pytest.raises(ValueError, match=r"differ at state\[0\]: an LSTMState against a Tensor"):
        bridge([(_lstm_layer(),), (torch.zeros(2, 4),)])


def test_a_misspelled_cell_option_lists_the_valid_ones():
    import rnnfuse

    with pytest.raises(
        TypeError, match=r"'forget_bais'; expected options from \[.*'forget_bias'.*\]"
    ):
        rnnfuse.StackedRNN(3, [4], cell="lstm", forget_bais=1.0)


@pytest.mark.parametrize("fuse", ["sum_states", "mean_states", "max_states"])
def test_fusing_states_of_different_sizes_points_to_concat_and_the_bridge(fuse):
    import torch

    from rnnfuse import LSTMState, fusion

    a = [LSTMState(torch.zeros(2, 4), torch.zeros(2, 4))]
    b = [LSTMState(torch.zeros(2, 5), torch.zeros(2, 5))]
    with pytest.raises(
        ValueError,
        match="feature size [\\s\\S]*concat_states joins states of different sizes, and StateBridge",
    ):
        getattr(fusion, fuse)([a, b])
