"""Cells against the NumPy reference of their equations (float64), gradcheck, configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy_reference import max_abs_diff, reference_for, state_to_numpy

from rnnfuse import GRUCell, LSTMCell, LSTMState, RNNCell
from rnnfuse.cells import cell_from_config, make_cell

IN, HID, BATCH, STEPS = 5, 6, 3, 4

CELL_CASES = {
    "lstm": ("lstm", {}),
    "lstm_forget_bias": ("lstm", {"forget_bias": 1.0}),
    "lstm_peepholes": ("lstm", {"peepholes": True}),
    "lstm_proj": ("lstm", {"proj_size": 4}),
    "lstm_cell_clip": ("lstm", {"cell_clip": 0.25}),
    "lstm_all": (
        "lstm",
        {
            "forget_bias": 0.7,
            "peepholes": True,
            "proj_size": 4,
            "cell_clip": 0.3,
            "proj_clip": 0.15,
        },
    ),
    "gru_reset_after": ("gru", {}),
    "gru_reset_before": ("gru", {"reset_after": False}),
    "rnn_tanh": ("rnn", {}),
    "rnn_relu": ("rnn", {"nonlinearity": "relu"}),
    # activations other than sigmoid/tanh (Keras' options), one per name at least
    "lstm_hard_sigmoid_keras2": ("lstm", {"recurrent_activation": "hard_sigmoid_keras2"}),
    "lstm_hard_sigmoid": (
        "lstm",
        {"recurrent_activation": "hard_sigmoid", "activation": "softsign"},
    ),
    "lstm_acts_peepholes": (
        "lstm",
        {
            "recurrent_activation": "hard_silu",
            "activation": "relu",
            "peepholes": True,
            "proj_size": 4,
            "forget_bias": 0.5,
        },
    ),
    "lstm_acts_smooth": ("lstm", {"recurrent_activation": "silu", "activation": "gelu"}),
    "lstm_acts_softplus": ("lstm", {"recurrent_activation": "softplus", "activation": "relu6"}),
    "gru_exp": ("gru", {"activation": "exponential"}),
    "gru_hard_sigmoid_keras2": ("gru", {"recurrent_activation": "hard_sigmoid_keras2"}),
    "gru_before_acts": (
        "gru",
        {"reset_after": False, "recurrent_activation": "hard_sigmoid", "activation": "elu"},
    ),
    "gru_acts": ("gru", {"recurrent_activation": "linear", "activation": "selu"}),
    "rnn_relu6": ("rnn", {"nonlinearity": "relu6"}),
    "rnn_mish": ("rnn", {"nonlinearity": "mish"}),
}


def _build(name: str, input_size: int = IN, hidden: int = HID) -> torch.nn.Module:
    kind, options = CELL_CASES[name]
    return make_cell(kind, input_size, hidden, **options).double()


def _random_state(cell, rng: np.random.Generator, batch: int = BATCH, scale: float = 1.0):
    """A non-zero start state, so recurrent weights and peepholes matter from step one."""
    zero = cell.initial_state(batch, dtype=torch.float64)
    if isinstance(zero, LSTMState):
        return LSTMState(*(torch.from_numpy(rng.uniform(-scale, scale, t.shape)) for t in zero))
    return torch.from_numpy(rng.uniform(-scale, scale, zero.shape))


def _run_both(cell, rng, scale: float = 0.5, x_scale: float = 1.0):
    """Step the cell and the reference together; return per-step (torch, numpy) pairs."""
    step, _ = reference_for(cell, rng, scale=scale)
    x = rng.uniform(-x_scale, x_scale, (STEPS, BATCH, IN))
    state = _random_state(cell, rng)
    ref_state = state_to_numpy(state)
    pairs = []
    for t in range(STEPS):
        out, state = cell(torch.from_numpy(x[t]), state)
        ref_out, ref_state = step(x[t], ref_state)
        pairs.append(((out, state), (ref_out, ref_state)))
    return pairs


@pytest.mark.parametrize("name", sorted(CELL_CASES))
def test_cell_matches_numpy_reference_float64(name, rng):
    cell = _build(name)
    for (out, state), (ref_out, ref_state) in _run_both(cell, rng):
        assert max_abs_diff(out, ref_out) < 1e-12
        assert max_abs_diff(state_to_numpy(state), ref_state) < 1e-12
        if isinstance(state, LSTMState):
            assert out is state.h or torch.equal(out, state.h)


@pytest.mark.parametrize(
    "options",
    [
        {"cell_clip": 0.2},
        {"proj_size": 4, "proj_clip": 0.1},
        {"proj_size": 4, "cell_clip": 0.2, "proj_clip": 0.1},
    ],
)
def test_clips_bind_and_match_reference(options, rng):
    """Large weights and inputs push c and the projection past the clips."""
    cell = LSTMCell(IN, HID, peepholes=True, **options).double()
    pairs = _run_both(cell, rng, scale=1.5, x_scale=3.0)
    cs = np.stack([ref[1][0] for _, ref in pairs])
    hs = np.stack([ref[1][1] for _, ref in pairs])
    for clip, values in ((options.get("cell_clip"), cs), (options.get("proj_clip"), hs)):
        if clip is not None:
            assert np.isclose(np.abs(values).max(), clip), (
                "the clip never bound: the test would prove nothing"
            )
            assert (np.isclose(np.abs(values), clip)).mean() > 0.1
    for (_, state), (_, ref_state) in pairs:
        assert max_abs_diff(state_to_numpy(state), ref_state) < 1e-12


def test_unclipped_cell_exceeds_the_clip_values_used_above(rng):
    """Same weights and inputs without clips: the clips above really change the numbers."""
    cell = LSTMCell(IN, HID, peepholes=True, proj_size=4).double()
    pairs = _run_both(cell, rng, scale=1.5, x_scale=3.0)
    assert max(np.abs(ref[1][0]).max() for _, ref in pairs) > 0.2
    assert max(np.abs(ref[1][1]).max() for _, ref in pairs) > 0.1


def test_forget_bias_is_applied_at_run_time_not_stored():
    cell = LSTMCell(IN, HID, forget_bias=1.0).double()
    plain = LSTMCell(IN, HID).double()
    plain.load_state_dict(cell.state_dict())
    assert set(cell.state_dict()) == {"weight_ih", "weight_hh", "bias"}
    x = torch.randn(BATCH, IN, dtype=torch.float64)
    start = _random_state(cell, np.random.default_rng(0))
    _, with_bias = cell(x, start)
    with torch.no_grad():
        plain.bias[HID : 2 * HID] += 1.0  # the forget gate's slice in the order i, f, g, o
    _, folded = plain(x, start)
    assert max_abs_diff(state_to_numpy(with_bias), state_to_numpy(folded)) < 1e-14


@pytest.mark.parametrize("name", sorted(CELL_CASES))
def test_cell_gradcheck_float64(name):
    cell = _build(name, 3, 4)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in cell.parameters()]
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    zero = cell.initial_state(2, dtype=torch.float64)
    parts = [
        torch.randn_like(t).mul_(0.5).requires_grad_(True)
        for t in (zero if isinstance(zero, LSTMState) else [zero])
    ]

    def fn(x, *tensors):
        state = LSTMState(tensors[0], tensors[1]) if isinstance(zero, LSTMState) else tensors[0]
        weights = dict(zip(names, tensors[len(parts) :]))
        out, new = torch.func.functional_call(cell, weights, (x, state))
        return (out, *(new if isinstance(new, LSTMState) else [new]))

    assert torch.autograd.gradcheck(fn, (x, *parts, *params))


@pytest.mark.parametrize("name", sorted(CELL_CASES))
def test_config_round_trip_rebuilds_the_same_cell(name):
    cell = _build(name)
    clone = cell_from_config(cell.config()).double()
    assert clone.config() == cell.config()
    clone.load_state_dict(cell.state_dict())
    x = torch.randn(BATCH, IN, dtype=torch.float64)
    assert max_abs_diff(state_to_numpy(cell(x)[1]), state_to_numpy(clone(x)[1])) == 0.0


@pytest.mark.parametrize(
    "cell, state_shapes",
    [
        (LSTMCell(IN, HID), ((2, HID), (2, HID))),
        (LSTMCell(IN, HID, proj_size=3), ((2, HID), (2, 3))),
        (GRUCell(IN, HID), (2, HID)),
        (RNNCell(IN, HID), (2, HID)),
    ],
)
def test_initial_state_is_zero_with_the_right_shapes(cell, state_shapes):
    state = cell.initial_state(2, dtype=torch.float64)
    if isinstance(state, LSTMState):
        assert (tuple(state.c.shape), tuple(state.h.shape)) == state_shapes
        assert cell.output_size == state_shapes[1][1]
    else:
        assert tuple(state.shape) == state_shapes
    assert all(
        t.dtype == torch.float64 and not t.any()
        for t in (state if isinstance(state, tuple) else [state])
    )


def test_step_without_state_starts_from_zero():
    cell = GRUCell(IN, HID)
    x = torch.randn(BATCH, IN)
    out, h = cell(x)
    out0, h0 = cell(x, torch.zeros(BATCH, HID))
    assert torch.equal(out, out0) and torch.equal(h, h0)


def test_parameter_shapes_follow_the_documented_layout():
    lstm = LSTMCell(IN, HID, peepholes=True, proj_size=3)
    shapes = {n: tuple(p.shape) for n, p in lstm.named_parameters()}
    assert shapes == {
        "weight_ih": (4 * HID, IN),
        "weight_hh": (4 * HID, 3),
        "bias": (4 * HID,),
        "w_i_diag": (HID,),
        "w_f_diag": (HID,),
        "w_o_diag": (HID,),
        "weight_hr": (3, HID),
    }
    assert {n for n, _ in GRUCell(IN, HID).named_parameters()} == {
        "weight_ih",
        "weight_hh",
        "bias_ih",
        "bias_hh",
    }
    assert {n for n, _ in GRUCell(IN, HID, reset_after=False).named_parameters()} == {
        "weight_ih",
        "weight_hh",
        "bias",
    }
    assert {n: tuple(p.shape) for n, p in RNNCell(IN, HID).named_parameters()} == {
        "weight_ih": (HID, IN),
        "weight_hh": (HID, HID),
        "bias": (HID,),
    }
