"""Constant, non-trainable tensors a cell adds to its own parameters for the kernels.

TF1's ``forget_bias`` is a float added at run time; PyTorch's fused kernels take a second
bias ``b_hh``, which an LSTM cell fills with the forget bias in the f slot (an RNN cell
with zeros).  Such constants are made once per (cell, key) and kept while the cell lives,
so a call never copies or re-lays-out weights.

Never kept: a constant made while tracing (``torch.compile``, ``torch.export``, any
active ``TorchDispatchMode`` such as a ``FakeTensorMode``) or one that is not a plain
tensor: a later eager call must not receive a fake or functional tensor.  Constants made
under ``inference_mode`` are made outside it, so later calls that autograd records can
use them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

__all__ = ["cached_constant", "tracing"]

_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Tensor]] = weakref.WeakKeyDictionary()
_is_compiling: Callable[[], bool] = getattr(torch.compiler, "is_compiling", lambda: False)


def tracing() -> bool:
    """Whether tensors made now may be fake, functional or graph proxies."""
    return _is_compiling() or is_in_torch_dispatch_mode()


def _is_plain(t: Tensor) -> bool:
    return type(t) is Tensor and not torch._is_functional_tensor(t)


def cached_constant(cell: nn.Module, key: tuple, make: Callable[[], Tensor]) -> Tensor:
    """``make()``, kept per ``cell`` under ``key`` (which must name dtype, device and
    every value the tensor depends on); see the module docstring for what is never kept."""
    if tracing():
        return make()
    per_cell = _CACHE.setdefault(cell, {})
    found = per_cell.get(key)
    if found is None:
        with torch.inference_mode(False):  # kept for later calls, which autograd may record
            found = make()
        if _is_plain(found):
            per_cell[key] = found
    return found
