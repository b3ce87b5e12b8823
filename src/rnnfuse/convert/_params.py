"""Gate orders and checked parameter copies, shared by the torch, Keras and TF1 converters.

rnnfuse stacks its gates as PyTorch does: LSTM i, f, g, o and GRU r, z, n.  Each
framework's order is written here once, with its own letters; letters that name the same
gate in two frameworks (TF1's j, Keras' c and rnnfuse's g are the candidate of an LSTM;
TF1's u is the update gate z) are mapped in :data:`_SAME_GATE`.

================  =============  =============
framework          LSTM           GRU
================  =============  =============
``"rnnfuse"``      i, f, g, o     r, z, n
``"torch"``        i, f, g, o     r, z, n
``"keras"``        i, f, c, o     z, r, h
``"tf1"``          i, j, f, o     r, u, c (``gates`` r, u then ``candidate``)
================  =============  =============

:func:`copy_params` is the one place where converted values enter a module: it checks
that every parameter is given, that no name is unknown and that every shape matches, and
reports all problems in one ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

_REAL = {np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)}
_REAL_TORCH = {torch.float16, torch.bfloat16, torch.float32, torch.float64}

GATE_ORDERS: dict[str, dict[str, str]] = {
    "rnnfuse": {"lstm": "ifgo", "gru": "rzn", "rnn": "h"},
    "torch": {"lstm": "ifgo", "gru": "rzn", "rnn": "h"},
    "keras": {"lstm": "ifco", "gru": "zrh", "rnn": "h"},
    "tf1": {"lstm": "ijfo", "gru": "ruc", "rnn": "h"},
}
_SAME_GATE = {  # per kind: a framework's letter -> rnnfuse's letter
    "lstm": {"j": "g", "c": "g"},
    "gru": {"u": "z", "h": "n", "c": "n"},
    "rnn": {},
}

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def gate_permutation(framework: str, kind: str) -> list[int]:
    """Indices ``p`` such that rnnfuse's gate ``k`` is ``framework``'s gate ``p[k]``.

    >>> gate_permutation("tf1", "lstm"), gate_permutation("keras", "gru")
    ([0, 2, 1, 3], [1, 0, 2])
    """
    if framework not in GATE_ORDERS:
        raise ValueError(f"framework: expected one of {sorted(GATE_ORDERS)}, got {framework!r}")
    if kind not in _SAME_GATE:
        raise ValueError(f"kind: expected one of {sorted(_SAME_GATE)}, got {kind!r}")
    theirs = [_SAME_GATE[kind].get(g, g) for g in GATE_ORDERS[framework][kind]]
    return [theirs.index(g) for g in GATE_ORDERS["rnnfuse"][kind]]


def to_rnnfuse_gates(a: Array, framework: str, kind: str, axis: int) -> Array:
    """``a`` (gates stacked along ``axis`` in ``framework``'s order) in rnnfuse's order."""
    return _reorder(a, gate_permutation(framework, kind), axis)


def from_rnnfuse_gates(a: Array, framework: str, kind: str, axis: int) -> Array:
    """The inverse of :func:`to_rnnfuse_gates`: rnnfuse's gate order to ``framework``'s."""
    order = gate_permutation(framework, kind)
    return _reorder(a, [order.index(k) for k in range(len(order))], axis)


def _reorder(a: Array, order: Sequence[int], axis: int) -> Array:
    if list(order) == list(range(len(order))):
        return a
    if a.shape[axis] % len(order):
        raise ValueError(
            f"gates: expected axis {axis} of length divisible by {len(order)}, "
            f"got shape {list(a.shape)}"
        )
    if isinstance(a, np.ndarray):
        parts = np.split(a, len(order), axis=axis)
        return np.concatenate([parts[i] for i in order], axis=axis)
    chunks = torch.chunk(a, len(order), dim=axis)
    return torch.cat([chunks[i] for i in order], dim=axis)


def copy_params(module: nn.Module, values: Mapping[str, Any], who: str = "module") -> None:
    """Copy ``values`` (``{name: array or tensor}``, ``None`` for zeros) into ``module``.

    Every parameter of ``module`` must be given, with its exact shape; each value is cast
    to the parameter's dtype and device.  Raises ``ValueError`` naming ``who`` and listing
    missing, unexpected and wrong-shape names.
    """
    params = dict(module.named_parameters())
    _check_params(params, values, who)
    with torch.no_grad():
        for name, value in values.items():
            if value is None:  # e.g. a torch module built with bias=False
                params[name].zero_()
            else:
                params[name].copy_(_as_tensor(value))


def _check_params(params: Mapping[str, nn.Parameter], values: Mapping[str, Any], who: str) -> None:
    problems = []
    missing = [n for n in params if n not in values]
    unexpected = [n for n in values if n not in params]
    if missing:
        problems.append(f"missing {missing}")
    if unexpected:
        problems.append(f"unexpected {unexpected}")
    for name, value in values.items():
        if name in params and value is not None and tuple(value.shape) != tuple(params[name].shape):
            problems.append(
                f"{name}: expected shape {list(params[name].shape)}, got {list(value.shape)}"
            )
        if value is not None and not _is_real(value):
            problems.append(
                f"{name}: expected a real floating dtype (float16/32/64), got {value.dtype}"
            )
    if problems:
        raise ValueError(f"{who}: parameters do not fit: " + "; ".join(problems))


def _is_real(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dtype in _REAL_TORCH
    return np.dtype(value.dtype) in _REAL


def check_real_weights(arrays: Sequence[Any], who: str) -> None:
    """Raise ``ValueError`` naming ``who`` unless every array holds real floating numbers
    (float16, float32 or float64): a complex, integer or string kernel builds no cell."""
    wrong = sorted({str(a.dtype) for a in arrays if not _is_real(a)})
    if wrong:
        raise ValueError(
            f"{who}: expected weights of a real floating dtype (float16/32/64), got {wrong}"
        )


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    return torch.from_numpy(np.ascontiguousarray(value))
