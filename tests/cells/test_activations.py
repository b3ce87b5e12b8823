"""Activations as cell options: the path each takes, files, conversions and bad names.

The equations are checked against the NumPy reference in ``test_cells.py`` and
``test_stack.py``; the Keras fixtures in ``test_keras_public.py``."""

from __future__ import annotations

import pytest
import torch

import rnnfuse
from rnnfuse import GRUCell, LSTMCell, RNNCell, StackedRNN
from rnnfuse.cells.activations import ACTIVATIONS, keras_activation
from rnnfuse.kernels import select_path


@pytest.mark.parametrize(
    "cell, path",
    [
        (LSTMCell(3, 4), "fused"),
        (GRUCell(3, 4), "fused"),
        (GRUCell(3, 4, reset_after=False), "bptt"),
        (RNNCell(3, 4, nonlinearity="relu"), "fused"),
        (LSTMCell(3, 4, recurrent_activation="hard_sigmoid"), "loop"),
        (LSTMCell(3, 4, activation="relu"), "loop"),
        (GRUCell(3, 4, recurrent_activation="hard_sigmoid_keras2"), "loop"),
        (GRUCell(3, 4, reset_after=False, activation="softsign"), "loop"),
        (RNNCell(3, 4, nonlinearity="softsign"), "loop"),
    ],
)
def test_defaults_keep_their_fast_paths_and_others_run_the_loop(cell, path):
    assert select_path(cell, torch.randn(2, 5, 3)) == path


def test_activations_are_saved_and_loaded(tmp_path):
    stack = StackedRNN.from_cells(
        [
            LSTMCell(3, 4, recurrent_activation="hard_sigmoid_keras2"),
            GRUCell(4, 2, activation="softsign", recurrent_activation="linear"),
        ]
    )
    rnnfuse.save(stack, tmp_path / "s.safetensors")
    loaded = rnnfuse.load(tmp_path / "s.safetensors")
    assert loaded.layers[0].recurrent_activation == "hard_sigmoid_keras2"
    assert (loaded.layers[1].activation, loaded.layers[1].recurrent_activation) == (
        "softsign",
        "linear",
    )
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        assert torch.equal(stack(x)[0], loaded(x)[0])


def test_to_torch_refuses_other_activations():
    stack = StackedRNN(3, [4], "lstm", recurrent_activation="hard_sigmoid")
    with pytest.raises(ValueError, match="sigmoid and tanh.*recurrent_activation"):
        stack.to_torch()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"activation": "softmax"}, ValueError, r"activation: expected one of .*got 'softmax'"),
        (
            {"recurrent_activation": 1},
            TypeError,
            r"recurrent_activation: expected an activation name",
        ),
    ],
)
def test_bad_activation_names_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        LSTMCell(3, 4, **kwargs)


def test_hard_sigmoid_differs_between_keras_2_and_3():
    """One name, two equations: Keras 2's slope is 0.2, Keras 3's 1/6."""
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 2.6])
    keras2 = ACTIVATIONS[keras_activation("hard_sigmoid", 2, "test")](x)
    keras3 = ACTIVATIONS[keras_activation("hard_sigmoid", 3, "test")](x)
    assert torch.allclose(keras2, torch.tensor([0.0, 0.3, 0.5, 0.7, 1.0]))
    assert torch.allclose(keras3, torch.tensor([0.0, 1 / 3, 0.5, 2 / 3, 5.6 / 6]))


@pytest.mark.parametrize(
    "value, major", [("softmax", 3), ("hard_silu", 2), ({"class_name": "Custom"}, 3)]
)
def test_unsupported_keras_activations_are_refused_by_name(value, major):
    with pytest.raises(ValueError, match="layer 'x': activation"):
        keras_activation(value, major, "layer 'x': activation")


@pytest.mark.slow
def test_export_of_other_activations_equals_eager():
    """The loop path is what a traced graph holds for such a layer (no operator needed)."""
    stack = StackedRNN.from_cells(
        [
            LSTMCell(3, 4, recurrent_activation="hard_sigmoid_keras2"),
            GRUCell(4, 2, activation="softsign"),
        ]
    ).eval()
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    with torch.no_grad():
        want = stack(x, lengths)[0]
    exported = torch.export.export(stack, (x, lengths))
    with torch.no_grad():
        assert torch.equal(exported.module()(x, lengths)[0], want)
