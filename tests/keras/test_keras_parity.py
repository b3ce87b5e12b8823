"""Parity with Keras 3 (torch backend): LSTM, GRU (both reset variants), SimpleRNN.

Keras weights are copied into rnnfuse cells here, from Keras' documented layout: ``kernel``
is ``(in, units * gates)`` (transposed against rnnfuse's ``(gates * H, in)``), gate orders
are LSTM i, f, c, o (rnnfuse i, f, g, o: the same) and GRU z, r, h (rnnfuse r, z, n:
swapped); a ``reset_after`` GRU's bias is ``(2, 3u)`` = (input bias, recurrent bias), a
reset-before GRU's is ``(3u,)``.  Keras' states are ``[h, c]`` (LSTM) or ``[h]``.

Everything runs in float32: Keras 3 (3.15) forces 64-bit results to 32 bits in its type
promotion (``keras.src.backend.common.dtypes._lattice_result_type``, to match JAX), so
``ops.matmul`` of two float64 tensors returns float32 and a ``dtype="float64"`` Keras layer
is only float32-accurate (errors ~1e-7 against a float64 NumPy evaluation).  A float64
comparison would test Keras' rounding, not rnnfuse; float64 parity is checked against
PyTorch and the NumPy reference instead.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"

import keras
import numpy as np
import pytest
import torch

from rnnfuse import GRUCell, LSTMCell, RNNCell, StackedRNN, from_keras_layout
from rnnfuse.state import flatten_state

F, U, B, T = 3, 4, 3, 5
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

DTYPE = "float32"
TOLERANCE = 2e-6


def _gru_to_rzn(columns: np.ndarray) -> np.ndarray:
    """Keras' z, r, h blocks (last axis) → rnnfuse's r, z, n."""
    z, r, h = np.split(columns, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


def _tensor(a: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(getattr(torch, dtype))


def _copy_into_cell(layer, dtype: str, input_size: int):
    """A new rnnfuse cell holding a built Keras layer's weights."""
    weights = layer.get_weights()
    if isinstance(layer, keras.layers.LSTM):
        kernel, recurrent, bias = weights
        cell = LSTMCell(input_size, layer.units)
        values = {"weight_ih": kernel.T, "weight_hh": recurrent.T, "bias": bias}
    elif isinstance(layer, keras.layers.GRU):
        kernel, recurrent, bias = weights
        cell = GRUCell(input_size, layer.units, reset_after=layer.reset_after)
        values = {"weight_ih": _gru_to_rzn(kernel).T, "weight_hh": _gru_to_rzn(recurrent).T}
        if layer.reset_after:
            values.update(bias_ih=_gru_to_rzn(bias[0]), bias_hh=_gru_to_rzn(bias[1]))
        else:
            values["bias"] = _gru_to_rzn(bias)
    else:
        kernel, recurrent, bias = weights
        cell = RNNCell(input_size, layer.units)
        values = {"weight_ih": kernel.T, "weight_hh": recurrent.T, "bias": bias}
    cell = cell.to(getattr(torch, dtype))
    with torch.no_grad():
        for name, value in values.items():
            getattr(cell, name).copy_(_tensor(value, dtype))
    return cell


def _randomise(layer, rng: np.random.Generator) -> None:
    """Random weights, biases included, so that every weight and bias matters."""
    layer.set_weights(
        [rng.uniform(-0.6, 0.6, w.shape).astype(w.dtype) for w in layer.get_weights()]
    )


LAYERS = {
    "lstm": lambda dtype: keras.layers.LSTM(
        U, return_sequences=True, return_state=True, dtype=dtype
    ),
    "gru_reset_after": lambda dtype: keras.layers.GRU(
        U, return_sequences=True, return_state=True, dtype=dtype
    ),
    "gru_reset_before": lambda dtype: keras.layers.GRU(
        U, reset_after=False, return_sequences=True, return_state=True, dtype=dtype
    ),
    "simple_rnn": lambda dtype: keras.layers.SimpleRNN(
        U, return_sequences=True, return_state=True, dtype=dtype
    ),
}


def _built(name: str, dtype: str, input_size: int, rng: np.random.Generator):
    layer = LAYERS[name](dtype)
    layer.build((None, None, input_size))
    _randomise(layer, rng)
    return layer


def _keras_state(results) -> object:
    """The layer state out of Keras' [output, *states] list, as an rnnfuse layer state."""
    return from_keras_layout(list(results[1:]))


def _err(a, b) -> float:
    fa = flatten_state(a) if isinstance(a, tuple) else [a]
    fb = flatten_state(b) if isinstance(b, tuple) else [b]
    assert [tuple(t.shape) for t in fa] == [tuple(t.shape) for t in fb]
    return max(
        float((torch.as_tensor(x).detach().cpu() - torch.as_tensor(y).detach().cpu()).abs().max())
        for x, y in zip(fa, fb)
    )


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_single_layer_matches_keras_from_a_given_initial_state(name, rng):
    dtype = DTYPE
    layer = _built(name, dtype, F, rng)
    stack = StackedRNN.from_cells([_copy_into_cell(layer, dtype, F)])
    x = rng.standard_normal((B, T, F)).astype(dtype)
    start = [
        rng.uniform(-0.5, 0.5, (B, U)).astype(dtype) for _ in range(2 if name == "lstm" else 1)
    ]
    results = layer(x, initial_state=start)
    out, state = stack(
        _tensor(x, dtype), initial_state=(from_keras_layout([_tensor(s, dtype) for s in start]),)
    )
    assert _err(out, results[0]) < TOLERANCE
    assert _err(state[0], _keras_state(results)) < TOLERANCE


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_two_stacked_keras_layers_match_a_two_layer_stack(name, rng):
    dtype = DTYPE
    first, second = _built(name, dtype, F, rng), _built(name, dtype, U, rng)
    stack = StackedRNN.from_cells(
        [_copy_into_cell(first, dtype, F), _copy_into_cell(second, dtype, U)]
    )
    x = rng.standard_normal((B, T, F)).astype(dtype)
    r1 = first(x)
    r2 = second(r1[0])
    out, state = stack(_tensor(x, dtype))
    assert _err(out, r2[0]) < TOLERANCE
    assert _err(state[0], _keras_state(r1)) < TOLERANCE
    assert _err(state[1], _keras_state(r2)) < TOLERANCE


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_masked_keras_layer_matches_lengths_on_valid_steps_and_final_state(name, rng):
    """Keras carries the last output through masked steps; rnnfuse zeroes them (TF1).

    Valid steps and the final state (the state at each sequence's true last step) agree.
    """
    layer = _built(name, DTYPE, F, rng)
    stack = StackedRNN.from_cells([_copy_into_cell(layer, DTYPE, F)])
    lengths = [2, 5, 3]
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    x = rng.standard_normal((B, T, F)).astype(DTYPE)
    results = layer(x, mask=mask)
    out, state = stack(_tensor(x, DTYPE), lengths)
    for b, n in enumerate(lengths):
        assert _err(out[b, :n], results[0][b, :n]) < TOLERANCE
        assert not out[b, n:].any()
    assert _err(state[0], _keras_state(results)) < TOLERANCE


def test_keras_bidirectional_lstm_matches_a_bidirectional_stack(rng):
    forward = keras.layers.LSTM(U, return_sequences=True, return_state=True, dtype=DTYPE)
    backward = keras.layers.LSTM(
        U, return_sequences=True, return_state=True, go_backwards=True, dtype=DTYPE
    )
    layer = keras.layers.Bidirectional(
        forward, backward_layer=backward, merge_mode="concat", dtype=DTYPE
    )
    layer.build((None, None, F))
    for sub in (layer.forward_layer, layer.backward_layer):
        _randomise(sub, rng)
    stack = StackedRNN.from_cells(
        [_copy_into_cell(layer.forward_layer, DTYPE, F)],
        backward_cells=[_copy_into_cell(layer.backward_layer, DTYPE, F)],
    )
    lengths = [5, 2, 4]
    mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    x = rng.standard_normal((B, T, F)).astype(DTYPE)
    out_k, fw_h, fw_c, bw_h, bw_c = layer(x, mask=mask)
    out, ((fw, bw),) = stack(_tensor(x, DTYPE), lengths)  # one layer's BidirectionalState
    for b, n in enumerate(lengths):
        assert _err(out[b, :n], out_k[b, :n]) < TOLERANCE
    assert _err(fw, from_keras_layout([fw_h, fw_c])) < TOLERANCE
    assert _err(bw, from_keras_layout([bw_h, bw_c])) < TOLERANCE
