"""Helpers shared by the hand-written backpropagation-through-time kernels.

The kernels run on the packed layout of :mod:`rnnfuse.kernels.layout` (one segment per
step): step ``t`` owns the flat rows ``[offset_t, offset_t + rows_t)``, its sequences are the
first ``rows_t`` of the sorted batch, and ``rows_t`` never grows with ``t``.  So the state
before step ``t`` is the first ``rows_t`` rows of step ``t - 1`` (or of the initial state).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ._ext import extension
from .layout import Layout

__all__ = [
    "StepRows",
    "step_rows",
    "previous",
    "previous_rows",
    "last_rows",
    "first_order_only",
    "compiled_for",
    "offsets_rows",
]

StepRows = tuple[tuple[int, int], ...]  # (offset, rows) per step


def compiled_for(t: Tensor) -> Any:
    """The C++ kernels (:mod:`rnnfuse.kernels._ext`) when they can run on ``t`` (a float32 or
    float64 CPU tensor, the extension built and not disabled), else ``None``."""
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64):
        return None
    return extension()


def offsets_rows(steps: StepRows) -> tuple[list[int], list[int]]:
    """``steps`` as the two lists the C++ kernels take: the offsets, the rows."""
    return [s[0] for s in steps], [s[1] for s in steps]


def step_rows(layout: Layout) -> StepRows:
    """``(offset, rows)`` of every step of a packed layout."""
    if any(seg.stop - seg.start != 1 for seg in layout.segments):
        raise ValueError(
            "step_rows: the BPTT kernels need the packed layout (one segment per step)"
        )
    return tuple((seg.offset, seg.rows) for seg in layout.segments)


def previous(flat: Tensor, initial: Tensor, steps: StepRows, t: int) -> Tensor:
    """The state before step ``t``: rows of step ``t - 1``
    (or of ``initial``), ``rows_t`` of them."""
    rows = steps[t][1]
    if t == 0:
        return initial[:rows]
    offset = steps[t - 1][0]
    return flat[offset : offset + rows]


def previous_rows(flat: Tensor, initial: Tensor, steps: StepRows) -> Tensor:
    """For every flat row, the state before its step: ``(N, features)``.

    Used after a loop, for the weight gradients as one matrix product.
    """
    parts: Sequence[Tensor] = [previous(flat, initial, steps, t) for t in range(len(steps))]
    if not parts:
        return flat[:0]
    return torch.cat(list(parts))


def last_rows(flat: Tensor, initial: Tensor, last_index: Tensor) -> Tensor:
    """Each sorted sequence's value at its last step; ``initial`` for empty sequences."""
    alive = last_index.shape[0]
    return torch.cat([flat.index_select(0, last_index), initial[alive:]])


def first_order_only(backward: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a hand-written ``backward`` as not differentiable: under ``create_graph=True``
    (a double backward: Hessians, gradient penalties) it raises instead of returning
    gradients that autograd would treat as constants."""

    @functools.wraps(backward)
    def wrapper(ctx: Any, *grads: Any) -> Any:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "rnnfuse BPTT kernel (LSTM with peepholes or clips, GRU with reset_after=False): "
                "double backward (create_graph=True) is not supported. Run the layer with "
                "rnnfuse.kernels.run_loop for higher-order gradients."
            )
        return backward(ctx, *grads)

    return wrapper
