"""Recurrent cells: parameters in modules, equations in small pure functions."""

from __future__ import annotations

import inspect
from typing import Any

from .base import RecurrentCell
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell
from .spec import GRUKernelArgs, KernelSpec, LSTMKernelArgs

__all__ = [
    "RecurrentCell",
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "KernelSpec",
    "LSTMKernelArgs",
    "GRUKernelArgs",
    "CELL_TYPES",
    "make_cell",
    "cell_from_config",
]

CELL_TYPES: dict[str, type[RecurrentCell]] = {"lstm": LSTMCell, "gru": GRUCell, "rnn": RNNCell}


def make_cell(kind: str, input_size: int, hidden_size: int, **options: Any) -> RecurrentCell:
    """Build a cell from its kind name (``"lstm"``, ``"gru"`` or ``"rnn"``)."""
    if kind not in CELL_TYPES:
        raise ValueError(f"cell: expected one of {sorted(CELL_TYPES)}, got {kind!r}")
    try:
        return CELL_TYPES[kind](input_size, hidden_size, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            valid = sorted(
                p
                for p in inspect.signature(CELL_TYPES[kind].__init__).parameters
                if p not in ("self", "input_size", "hidden_size")
            )
            raise TypeError(
                f"cell options for {kind!r}: {exc}; expected options from {valid}"
            ) from None
        raise


def cell_from_config(config: dict[str, Any]) -> RecurrentCell:
    """Inverse of :meth:`RecurrentCell.config`."""
    config = dict(config)
    kind = config.pop("kind")
    return make_cell(kind, config.pop("input_size"), config.pop("hidden_size"), **config)
