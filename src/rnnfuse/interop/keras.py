"""Deprecated: use :mod:`rnnfuse.convert.keras` (or ``rnnfuse.stack_from_keras``)."""

from ..convert.keras import stack_from_keras
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.convert.keras")

__all__ = ["stack_from_keras"]
