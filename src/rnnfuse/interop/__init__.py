"""Deprecated: the converters moved to :mod:`rnnfuse.convert` (PyTorch, Keras) and
:mod:`rnnfuse.tf1` (TensorFlow 1).  The modules here re-export the new ones and warn."""

from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.convert and rnnfuse.tf1")

__all__: list[str] = []
