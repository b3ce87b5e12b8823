"""The activations a cell may use for its gates and its candidate, by name.

Each name means one equation; where the frameworks give one name two meanings, rnnfuse has
two names (the Keras readers translate, knowing which Keras wrote the file):

=======================  ===================================================================
``tanh``, ``sigmoid``    the defaults (PyTorch's fused kernels run only these)
``hard_sigmoid``         ``relu6(x + 3) / 6``: Keras 3's ``hard_sigmoid``, PyTorch's
                         ``hardsigmoid``
``hard_sigmoid_keras2``  ``clip(0.2 x + 0.5, 0, 1)``: Keras 2's ``hard_sigmoid`` (tf-keras,
                         Keras < 3; the LSTM/GRU default ``recurrent_activation`` before 2.3)
``relu``, ``relu6``,     as in PyTorch and Keras (identical there)
``linear``, ``softsign``,
``softplus``, ``elu``
(alpha 1), ``selu``,
``silu`` (Keras'
``swish``), ``gelu``
(exact, with erf),
``exponential``,
``hard_silu`` (Keras'
``hard_swish``), ``mish``
=======================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["ACTIVATIONS", "activation", "check_activation", "keras_activation"]


def _hard_sigmoid_keras2(x: Tensor) -> Tensor:
    return (x * 0.2 + 0.5).clamp(0.0, 1.0)


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "hard_sigmoid": F.hardsigmoid,
    "hard_sigmoid_keras2": _hard_sigmoid_keras2,
    "relu": torch.relu,
    "relu6": F.relu6,
    "linear": lambda x: x,
    "softsign": F.softsign,
    "softplus": F.softplus,
    "elu": F.elu,
    "selu": F.selu,
    "silu": F.silu,
    "gelu": F.gelu,
    "exponential": torch.exp,
    "hard_silu": F.hardswish,
    "mish": F.mish,
}

#: Keras names that differ from rnnfuse's, per Keras major version (others are the same)
_KERAS_ALIASES = {
    2: {"hard_sigmoid": "hard_sigmoid_keras2", "swish": "silu"},
    3: {"swish": "silu", "hard_swish": "hard_silu"},
}
#: names a Keras version lacks (its files cannot hold them)
_KERAS_MISSING = {2: {"hard_silu", "hard_swish", "hard_sigmoid_keras2"}, 3: {"hard_sigmoid_keras2"}}


def check_activation(name: str, value: object) -> str:
    """``value`` if it is an activation's name; ``ValueError``/``TypeError`` naming the
    argument ``name`` otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected an activation name (a str), got {value!r}")
    if value not in ACTIVATIONS:
        raise ValueError(f"{name}: expected one of {sorted(ACTIVATIONS)}, got {value!r}")
    return value


def activation(value: str) -> Callable[[Tensor], Tensor]:
    """The function of the activation named ``value``."""
    return ACTIVATIONS[check_activation("activation", value)]


def keras_activation(value: object, keras_major: int, where: str) -> str:
    """rnnfuse's name for the activation a Keras ``keras_major`` configuration names
    (``value``: a name, or Keras 3's ``{"class_name": "function", "config": name}``);
    ``ValueError`` saying what is unsupported, with ``where`` (e.g. ``layer 'lstm':
    recurrent_activation``) in front."""
    if (
        isinstance(value, dict)
        and isinstance(value.get("config"), str)
        and str(value.get("module", "keras.activations")).startswith("keras")
    ):
        value = value["config"]
    if not isinstance(value, str):
        raise ValueError(
            f"{where}: {value!r} is not a built-in Keras activation; rnnfuse reads "
            f"built-in activations by name only (a custom function's code is not "
            f"in the file)"
        )
    if value in _KERAS_MISSING.get(keras_major, set()) or value not in (
        set(ACTIVATIONS) | set(_KERAS_ALIASES.get(keras_major, {}))
    ):
        supported = sorted(
            (set(ACTIVATIONS) - _KERAS_MISSING.get(keras_major, set()))
            | set(_KERAS_ALIASES.get(keras_major, {}))
        )
        raise ValueError(
            f"{where}: {value!r} is not supported (Keras {keras_major} activations "
            f"rnnfuse computes: {supported}; e.g. softmax acts across a gate's "
            f"units, which no cell of rnnfuse does)"
        )
    return _KERAS_ALIASES.get(keras_major, {}).get(value, value)
