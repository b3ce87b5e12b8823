"""The reference path: a Python loop over time steps, with TF1 ``dynamic_rnn`` masking.

Past a sequence's length its output is zero and its state is carried through unchanged, so
the final state is the one at the true last step (a zero length keeps the initial state).
The step still runs there for the whole batch, on zero input and a zero state: neither the
padding nor a carried state that is infinite or NaN reaches a product there, so the
backward's ``0 · inf`` cannot put NaN into a gradient (each sequence's values and gradients
are those of the sequence run alone).  Every fast path must agree with this loop to
floating-point rounding.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..cells.base import RecurrentCell
from ..state import map_state, where_state

__all__ = ["run_loop", "reverse_within_lengths"]


def reverse_within_lengths(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence of ``x`` (B, T, ...) within its length; padding stays put.

    This is TF1's ``reverse_sequence``, used by the backward direction.  It is its own
    inverse.
    """
    if lengths is None:
        return x.flip(1)
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    lens = lengths.to(x.device).unsqueeze(1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


def _step_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(T, B, 1)`` bool mask: true where step t is inside sequence b."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(1)
    return (t < lengths.unsqueeze(0)).unsqueeze(-1)


def _inside(mask: Tensor, state: Any) -> Any:
    """``state`` where ``mask`` (B, 1) is true, zero elsewhere (selected, so NaN too)."""
    return map_state(lambda s: torch.where(mask, s, s.new_zeros(())), state, check=False)


def run_loop(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool = False,
) -> tuple[Tensor, Any]:
    """Run ``cell`` over ``x`` (B, T, F) from ``state``; returns ``(outputs, final_state)``."""
    if reverse:
        x = reverse_within_lengths(x, lengths)
    masks = None if lengths is None else _step_mask(lengths.to(x.device), x.shape[1])
    if (
        masks is not None
    ):  # padding may hold anything (NaN too): it must reach neither outputs nor grads
        x = torch.where(masks.transpose(0, 1), x, x.new_zeros(()))
    xw = cell.project_input(x).transpose(0, 1)  # (T, B, G*H), one matmul for all steps
    outputs = []
    for t in range(xw.shape[0]):
        out, new_state = cell.step_projected(
            xw[t], state if masks is None else _inside(masks[t], state)
        )
        if masks is not None:
            out = torch.where(masks[t], out, out.new_zeros(()))
            new_state = where_state(masks[t], new_state, state)
        state = new_state
        outputs.append(out)
    if outputs:
        y = torch.stack(outputs, dim=1)
    else:
        y = x.new_zeros(x.shape[0], 0, cell.output_size)
    if reverse:
        y = reverse_within_lengths(y, lengths)
    return y, state
