"""What the Keras readers hand to the converter: one :class:`KerasLayer` per Keras layer.

Shared by :mod:`rnnfuse.convert.keras` (live models, Keras 3 files, the conversion),
:mod:`rnnfuse.convert.keras_h5` (Keras 2 ``.h5``) and
:mod:`rnnfuse.convert.keras_savedmodel` (tf-keras SavedModel directories).
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

import numpy as np

GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}
KINDS = {"LSTM": "lstm", "GRU": "gru", "SimpleRNN": "rnn"}
#: cells of RNN(cell) / StackedRNNCells, by class, and the layer they act as
CELL_CLASSES = {"LSTMCell": "LSTM", "GRUCell": "GRU", "SimpleRNNCell": "SimpleRNN"}
NEUTRAL = {
    "InputLayer",
    "Masking",
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "NotEqual",
    "Any",
}  # the last two: the mask a functional model computes for Masking


class KerasFormatError(ValueError):
    """A Keras file that cannot be read (corrupt, truncated, or not what it claims to be)."""


class KerasLayer(NamedTuple):
    name: str
    class_name: str  # LSTM, GRU, SimpleRNN, or any other Keras class
    config: dict[str, Any]
    weights: list[np.ndarray]
    backward: KerasLayer | None = None  # set for Bidirectional
    cells: tuple[KerasLayer, ...] = ()  # RNN(StackedRNNCells) / RNN([cells]): one per cell
    keras_major: int = 3  # the Keras that wrote it: names such as hard_sigmoid depend on it
    inbound: Any = None  # an _keras_graph.Inbound: what it was called on (None: no graph)


def keras_major(version: object, default: int) -> int:
    """The major version of a ``keras_version`` string (``"2.2.4"`` -> 2), ``default``
    when there is none or it is not a version."""
    found = re.match(r"\s*(\d+)\.", version if isinstance(version, str) else "")
    return int(found.group(1)) if found else default


def with_keras_major(layers: list[KerasLayer], major: int) -> list[KerasLayer]:
    """``layers`` (their backward halves and cells too) marked as written by Keras ``major``."""

    def mark(layer: KerasLayer) -> KerasLayer:
        return layer._replace(
            keras_major=major,
            backward=None if layer.backward is None else mark(layer.backward),
            cells=tuple(mark(c) for c in layer.cells),
        )

    return [mark(layer) for layer in layers]


def snake(name: str) -> str:
    """Keras' ``to_snake_case`` of a class name (``SimpleRNN`` -> ``simple_rnn``)."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def text(value: Any) -> str:
    """An HDF5 string attribute as ``str`` (h5py 3 gives ``str``, older files bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value.item())
    if isinstance(value, str):
        return value
    raise KerasFormatError(f"expected a string attribute, got {type(value).__name__}")
