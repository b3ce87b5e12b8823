"""Deprecated: use :mod:`rnnfuse.tf1.names`."""

from ..tf1.names import (CELL_TYPES, PEEPHOLES, TF1VariableError, TFBidirectional, TFLayer, TFStack,
                         find_rnn_scopes, parse_scope, variable_shapes)
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.tf1.names")

__all__ = ["TF1VariableError", "TFLayer", "TFStack", "TFBidirectional", "CELL_TYPES",
           "PEEPHOLES", "parse_scope", "find_rnn_scopes", "variable_shapes"]
