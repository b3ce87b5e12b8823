"""Deprecated: use :meth:`rnnfuse.StackedRNN.from_torch` / ``to_torch`` (cells:
:mod:`rnnfuse.convert.torch`)."""

from __future__ import annotations

from torch import nn

from ..stack import StackedRNN
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.convert.torch (stacks: StackedRNN.from_torch / to_torch)")

__all__ = ["stack_from_torch", "stack_to_torch"]


def stack_from_torch(module: nn.Module) -> StackedRNN:
    """:meth:`StackedRNN.from_torch <rnnfuse.StackedRNN.from_torch>`."""
    return StackedRNN.from_torch(module)


def stack_to_torch(stack: StackedRNN) -> nn.Module:
    """:meth:`StackedRNN.to_torch <rnnfuse.StackedRNN.to_torch>`."""
    return stack.to_torch()
