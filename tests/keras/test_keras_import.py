"""Keras 3 (live, on the torch backend) against stacks imported with stack_from_keras.

Each model is built in Keras with random weights, run by Keras, saved to .keras and
.weights.h5, and imported three ways (live model, .keras, .weights.h5); outputs and every
layer's final state must agree.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"

import keras
import numpy as np
import pytest
import torch

from rnnfuse.convert.keras import stack_from_keras
from rnnfuse.state import BidirectionalState, to_keras_layout

L = keras.layers
T, F = 6, 4
# Keras 3.15 on NumPy 2 warns from its own internals on every weight read.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def test_keras_runs_on_torch():
    assert keras.backend.backend() == "torch"


def build(layers, masking=False, seed=0):
    """A functional model returning the top outputs and every layer's states (Keras order)."""
    inputs = keras.Input((T, F))
    x = L.Masking(0.0)(inputs) if masking else inputs
    states = []
    for layer in layers:
        out = layer(x)
        x, layer_states = out[0], list(out[1:])
        states.append(layer_states)
    model = keras.Model(inputs, [x] + [s for layer_states in states for s in layer_states])
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.uniform(-0.7, 0.7, tuple(w.shape)).astype("float32"))
    return model


def keras_run(model, x):
    return [keras.ops.convert_to_numpy(t) for t in model(x)]


def stack_run(stack, x, lengths=None):
    with torch.no_grad():
        outputs, state = stack(torch.from_numpy(x), lengths)
    layers = [tuple(s) if isinstance(s, BidirectionalState) else (s,) for s in state]
    flat = [t.numpy() for pair in layers for s in pair for t in to_keras_layout(s)]
    return [outputs.numpy()] + flat


def sources(model, tmp_path):
    model.save(tmp_path / "m.keras")
    model.save_weights(tmp_path / "m.weights.h5")
    return {
        "live": model,
        "keras": str(tmp_path / "m.keras"),
        "weights": str(tmp_path / "m.weights.h5"),
    }


def seq(cls, units, **kw):
    return cls(units, return_sequences=True, return_state=True, **kw)


MODELS = {
    "lstm-gru-gru_reset_before-rnn": lambda: [
        seq(L.LSTM, 7),
        seq(L.GRU, 5),
        seq(L.GRU, 6, reset_after=False),
        seq(L.SimpleRNN, 3),
    ],
    "stacked-lstm": lambda: [seq(L.LSTM, 5), seq(L.LSTM, 5), seq(L.LSTM, 2)],
    "no-bias": lambda: [
        seq(L.GRU, 5, use_bias=False),
        seq(L.LSTM, 3, use_bias=False),
        seq(L.SimpleRNN, 2, use_bias=False),
    ],
    "no-bias-reset-before": lambda: [seq(L.GRU, 4, use_bias=False, reset_after=False)],
    "bidirectional": lambda: [L.Bidirectional(seq(L.LSTM, 5)), L.Bidirectional(seq(L.GRU, 3))],
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_with_keras(name, tmp_path):
    model = build(MODELS[name]())
    x = np.random.default_rng(1).normal(size=(3, T, F)).astype("float32")
    expected = keras_run(model, x)
    for kind, source in sources(model, tmp_path).items():
        if name == "no-bias-reset-before" and kind == "weights":
            # a weights-only file cannot tell a bias-free GRU's reset_after: Keras' default assumed
            assert stack_from_keras(source).layers[0].reset_after is True
            continue
        got = stack_run(stack_from_keras(source), x)
        assert len(got) == len(expected), kind
        for i, (a, b) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f"{kind} part {i}")


def test_relu_simple_rnn_from_model_and_keras_file(tmp_path):
    model = build([seq(L.SimpleRNN, 5, activation="relu"), seq(L.SimpleRNN, 3)])
    x = np.random.default_rng(2).normal(size=(2, T, F)).astype("float32")
    expected = keras_run(model, x)
    for kind in ("live", "keras"):
        stack = stack_from_keras(sources(model, tmp_path)[kind])
        assert stack.layers[0].nonlinearity == "relu"
        for a, b in zip(stack_run(stack, x), expected):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=kind)


def test_masked_keras_model_equals_lengths(tmp_path):
    """Right-padded input + Masking in Keras == lengths in rnnfuse: final states, and the
    outputs inside each length (past it Keras repeats the last output, rnnfuse gives zero)."""
    model = build([seq(L.LSTM, 5), seq(L.GRU, 4)], masking=True)
    lengths = np.array([6, 2, 4])
    x = np.random.default_rng(3).normal(size=(3, T, F)).astype("float32")
    x[np.arange(T)[None, :] >= lengths[:, None]] = 0.0
    expected = keras_run(model, x)
    stack = stack_from_keras(sources(model, tmp_path)["keras"])
    got = stack_run(stack, x, torch.from_numpy(lengths))
    inside = np.arange(T)[None, :] < lengths[:, None]
    np.testing.assert_allclose(got[0][inside], expected[0][inside], rtol=0, atol=1e-5)
    assert np.all(got[0][~inside] == 0)
    for a, b in zip(got[1:], expected[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_layer_names_pick_the_recurrent_layers(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((T, F)),
            L.LSTM(5, return_sequences=True, name="enc"),
            L.Dropout(0.5),
            L.Dense(2, name="head"),
        ]
    )
    with pytest.raises(
        ValueError, match=r"\['head \(Dense, with weights\)'\].*layer_names=\['enc'\]"
    ):
        stack_from_keras(model)
    x = np.random.default_rng(4).normal(size=(2, T, F)).astype("float32")
    expected = keras.ops.convert_to_numpy(model.get_layer("enc")(x))
    for source in (model, sources(model, tmp_path)["keras"]):
        got = stack_run(stack_from_keras(source, layer_names=["enc"]), x)[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    got = stack_run(stack_from_keras(tmp_path / "m.weights.h5", layer_names=["lstm"]), x)[0]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"no layers named \['nope'\]"):
        stack_from_keras(model, layer_names=["nope"])


def test_weights_file_with_ambiguous_order_asks_for_layer_names(tmp_path):
    model = build([seq(L.LSTM, 4), seq(L.GRU, 4), seq(L.LSTM, 4)])
    paths = sources(model, tmp_path)
    with pytest.raises(ValueError, match="more than one order fits"):
        stack_from_keras(paths["weights"])
    x = np.random.default_rng(5).normal(size=(2, T, F)).astype("float32")
    got = stack_run(stack_from_keras(paths["weights"], layer_names=["lstm", "gru", "lstm_1"]), x)
    for a, b in zip(got, keras_run(model, x)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_unsupported_layers_are_refused():
    inputs = keras.Input((T, F))
    with pytest.raises(
        ValueError, match="layer 'lstm_softmax': recurrent_activation: 'softmax' is not supported"
    ):
        stack_from_keras(
            keras.Model(
                inputs, L.LSTM(3, recurrent_activation="softmax", name="lstm_softmax")(inputs)
            )
        )
    # a lone go_backwards layer imports as GoBackwards now (tests/keras/test_keras_legacy.py); in a
    # stack of several layers it is still refused
    backwards = L.GRU(3, go_backwards=True, return_sequences=True)(inputs)
    with pytest.raises(
        ValueError, match="go_backwards=True is supported only as the backward half"
    ):
        stack_from_keras(keras.Model(inputs, L.GRU(2)(backwards)))
    # Bidirectional -> GRU (mixed directions) and any merge_mode but None below another layer
    # are supported now (tests/keras/test_keras_legacy.py, tests/keras/test_keras_public.py)
    mixed = L.GRU(3, return_sequences=True)(
        L.Bidirectional(L.GRU(3, return_sequences=True))(inputs)
    )
    assert stack_from_keras(keras.Model(inputs, mixed)).bidirectional == (True, False)
    fw_bw, top = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode=None), L.GRU(2)
    top(L.Concatenate()(fw_bw(inputs)))
    with pytest.raises(ValueError, match="merge_mode=None below another layer"):
        stack_from_keras([fw_bw, top])
    with pytest.raises(ValueError, match=r"layers \['activation \(Activation\)'\]"):
        stack_from_keras(
            keras.Model(inputs, L.GRU(2)(L.Activation("relu", name="activation")(inputs)))
        )


def test_bad_files_are_refused(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="is not a Keras 3 .keras file"):
        stack_from_keras(bad)
    bad_h5 = tmp_path / "bad.weights.h5"
    bad_h5.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="is not an HDF5 file"):
        stack_from_keras(bad_h5)
    with pytest.raises(ValueError, match="expected a .keras or .weights.h5 path"):
        stack_from_keras(tmp_path / "model.pt")


@pytest.mark.parametrize("cell", ["one", "stacked", "list"])
def test_rnn_over_cells_from_model_and_keras_file(cell, tmp_path):
    """``RNN(cell)``, ``RNN(StackedRNNCells([...]))`` and ``RNN([cells])``, live and from .keras."""
    cells = {
        "one": lambda: L.LSTMCell(5),
        "stacked": lambda: L.StackedRNNCells([L.LSTMCell(5), L.GRUCell(3, reset_after=False)]),
        "list": lambda: [L.SimpleRNNCell(4), L.GRUCell(3)],
    }[cell]()
    inputs = keras.Input((T, F))
    model = keras.Model(
        inputs, keras.tree.flatten(L.RNN(cells, return_sequences=True, return_state=True)(inputs))
    )
    rng = np.random.default_rng(5)
    for w in model.weights:
        w.assign(rng.uniform(-0.7, 0.7, tuple(w.shape)).astype("float32"))
    x = rng.normal(size=(2, T, F)).astype("float32")
    expected = keras_run(model, x)
    for kind in ("live", "keras", "weights"):  # weights: the cells' order from their shapes
        got = stack_run(stack_from_keras(sources(model, tmp_path)[kind]), x)
        assert len(got) == len(expected), kind
        for i, (a, b) in enumerate(zip(got, expected)):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f"{kind} part {i}")


def test_rnn_cells_of_ambiguous_order_in_a_weights_file_are_refused(tmp_path):
    inputs = keras.Input((T, F))
    model = keras.Model(inputs, L.RNN([L.LSTMCell(F), L.GRUCell(F)])(inputs))
    with pytest.raises(
        ValueError,
        match=r"layer 'rnn': a .weights.h5 file does not store the order of its "
        r"cells \['gru_cell', 'lstm_cell'\] and more than one order fits",
    ):
        stack_from_keras(sources(model, tmp_path)["weights"])
    assert [c.kind for c in stack_from_keras(sources(model, tmp_path)["keras"]).layers] == [
        "lstm",
        "gru",
    ]
