"""Deprecated: use :mod:`rnnfuse.tf1.checkpoint`."""

from ..tf1.checkpoint import CheckpointError, VariableInfo, list_variables, read_checkpoint
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.tf1.checkpoint")

__all__ = ["CheckpointError", "VariableInfo", "list_variables", "read_checkpoint"]
