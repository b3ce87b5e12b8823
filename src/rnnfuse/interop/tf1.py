"""Deprecated: use :mod:`rnnfuse.tf1.convert` (and :class:`rnnfuse.BidirectionalRNN`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import nn

from ..bidirectional import BidirectionalRNN
from ..convert._params import copy_params
from ..tf1._layers import cell_to_tf, check_layers, initial_values, layer_arrays, make_cell, tf_cell_name
from ..tf1.convert import TF1VariableError, load_stack, stack_from_variables, stack_to_tf
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.tf1.convert (BidirectionalRNN: rnnfuse.bidirectional)")

__all__ = [
    "BidirectionalRNN", "TF1VariableError", "load_stack", "stack_from_variables", "layer_arrays",
    "initial_values", "make_cell", "check_layers", "copy_arrays", "tf_cell_name", "cell_to_tf",
    "stack_to_tf",
]


def copy_arrays(cell: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy converted arrays into ``cell``'s parameters (same names and shapes)."""
    copy_params(cell, arrays, "cell")
