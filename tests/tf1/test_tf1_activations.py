"""TF1 cells built with ``activation=``: the checkpoint reader and the facade against the
numbers TensorFlow computed (tests/fixtures/legacy/tf1_activations: BasicLSTMCell(softsign)
-> LSTMCell(num_proj=3, elu) -> GRUCell(relu), ``dynamic_rnn`` with ``sequence_length``).
A TF checkpoint does not store activations: the caller names them, one for every layer, so
the three layers are loaded one scope-layer at a time here."""

from __future__ import annotations

import numpy as np
import torch
from legacy_cases import LEGACY, close, io

from rnnfuse import StackedRNN, tf1
from rnnfuse.tf1 import load_stack

CASE = LEGACY / "tf1_activations"
ACTIVATIONS = ["softsign", "elu", "relu"]


def _per_layer_stack() -> StackedRNN:
    """The stack with each layer's own activation: loaded once per activation, the layers
    taken from the load that used theirs."""
    loads = [load_stack(CASE / "model", "rnn", activation=act) for act in ACTIVATIONS]
    return StackedRNN.from_cells([loads[k].layers[k] for k in range(3)])


def test_load_stack_with_activations_matches_tf():
    data = io("tf1_activations")
    stack = _per_layer_stack()
    assert [
        stack.layers[0].activation,
        stack.layers[1].activation,
        stack.layers[2].activation,
    ] == ACTIVATIONS
    x, lengths = torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"])
    with torch.no_grad():
        out, (s0, s1, s2) = stack(x, lengths)
    close(out, data["outputs"])  # TF1: zeros past each length, as here
    close(s0.c, data["state/0/c"]), close(s0.h, data["state/0/h"])
    close(s1.c, data["state/1/c"]), close(s1.h, data["state/1/h"]), close(s2, data["state/2"])


def test_the_activation_matters():
    data = io("tf1_activations")
    stack = load_stack(CASE / "model", "rnn")  # tanh everywhere: not what TF ran
    with torch.no_grad():
        out, _ = stack(torch.from_numpy(data["x"]), torch.from_numpy(data["sequence_length"]))
    assert np.abs(out.numpy() - data["outputs"]).max() > 1e-3


def test_facade_cells_take_activations_and_restore_tf_numbers():
    data = io("tf1_activations")
    cell = tf1.MultiRNNCell(
        [
            tf1.BasicLSTMCell(4, activation="softsign"),
            tf1.LSTMCell(4, num_proj=3, activation=torch.nn.functional.elu),
            tf1.GRUCell(3, activation=torch.relu),
        ]
    )
    x = torch.from_numpy(data["x"])
    tf1.dynamic_rnn(cell, x, sequence_length=data["sequence_length"], dtype=torch.float32)  # builds
    tf1.restore(cell, CASE / "model")
    with torch.no_grad():
        out, state = tf1.dynamic_rnn(
            cell, x, sequence_length=data["sequence_length"], dtype=torch.float32
        )
    (
        close(out, data["outputs"]),
        close(state[2], data["state/2"]),
        close(state[1].h, data["state/1/h"]),
    )
