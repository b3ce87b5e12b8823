"""Constant, non-trainable tensors the fast paths add to a cell's own parameters.

TF1's ``forget_bias`` is a float added at run time; PyTorch's kernels take a second bias
``b_hh``.  A fused LSTM gets ``bias`` as ``b_ih`` and a constant ``b_hh`` holding the forget
bias in the f slot.  Such constants are made once per (cell, dtype, device, value) and
kept while the cell lives, so a call never copies or re-lays-out weights.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..cells import LSTMCell

__all__ = ["forget_bias_vector", "zero_vector"]

_CACHE: weakref.WeakKeyDictionary[nn.Module, dict[tuple, Tensor]] = weakref.WeakKeyDictionary()


def _cached(cell: nn.Module, key: tuple, make: Callable[[], Tensor]) -> Tensor:
    per_cell = _CACHE.setdefault(cell, {})
    found = per_cell.get(key)
    if found is None:
        with torch.inference_mode(False):  # kept for later calls, which autograd may record
            found = per_cell[key] = make()
    return found


def forget_bias_vector(cell: LSTMCell, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(4H,)``: zeros with ``cell.forget_bias`` in the f slot (gate order i, f, g, o)."""
    hidden, value = cell.hidden_size, float(cell.forget_bias)

    def make() -> Tensor:
        vec = torch.zeros(4 * hidden, dtype=dtype, device=device)
        vec[hidden : 2 * hidden] = value
        return vec

    return _cached(cell, ("forget_bias", value, dtype, device), make)


def zero_vector(cell: nn.Module, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(size,)`` zeros: the second bias of a cell that has only one."""
    return _cached(cell, ("zeros", size, dtype, device), lambda: torch.zeros(size, dtype=dtype, device=device))
