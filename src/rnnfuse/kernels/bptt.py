"""Running a layer through the hand-written BPTT kernels (:mod:`.bptt_lstm`, :mod:`.bptt_gru`).

The batch is moved once into the packed layout (sorted by length, reversed within each
length for the backward direction, nothing stored past a length), the input projection of
every step is one matrix product, and one autograd node runs the whole recurrence.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..cells import GRUCell, LSTMCell
from ..state import LSTMState
from .bptt_gru import GRUFunction
from .bptt_lstm import LSTMFunction
from .constants import forget_bias_vector
from .layout import Layout, layout_for
from .steps import step_rows

__all__ = ["run_bptt_lstm", "run_bptt_gru"]


def _packed(x: Tensor, lengths: Tensor | None, reverse: bool) -> Layout:
    return layout_for(lengths, x.shape[1], reverse, None, x.shape[0], x.device)


def run_bptt_lstm(
    cell: LSTMCell, x: Tensor, lengths: Tensor | None, state: LSTMState, reverse: bool = False
) -> tuple[Tensor, LSTMState]:
    """An :class:`LSTMCell` with any options, over ``x`` (B, T, F); see ``run_layer``."""
    layout = _packed(x, lengths, reverse)
    bias = cell.bias
    if cell.forget_bias:
        bias = bias + forget_bias_vector(cell, bias.dtype, bias.device)
    peepholes = torch.stack(cell.peephole_weights()) if cell.peepholes else None
    hs, c, h = LSTMFunction.apply(
        step_rows(layout),
        layout.last_index,
        cell.cell_clip,
        cell.proj_clip,
        layout.gather_input(x),
        cell.weight_ih,
        bias,
        layout.sort(state.c),
        layout.sort(state.h),
        cell.weight_hh,
        peepholes,
        getattr(cell, "weight_hr", None),
    )
    return layout.scatter_output(hs), LSTMState(layout.unsort(c), layout.unsort(h))


def run_bptt_gru(
    cell: GRUCell, x: Tensor, lengths: Tensor | None, state: Tensor, reverse: bool = False
) -> tuple[Tensor, Any]:
    """A reset-before :class:`GRUCell` over ``x`` (B, T, F); see ``run_layer``."""
    if cell.reset_after:
        raise ValueError("run_bptt_gru: expects reset_after=False (reset_after=True maps onto torch's GRU)")
    layout = _packed(x, lengths, reverse)
    hs, h = GRUFunction.apply(
        step_rows(layout), layout.last_index, layout.gather_input(x), cell.weight_ih, cell.bias,
        layout.sort(state), cell.weight_hh,
    )
    return layout.scatter_output(hs), layout.unsort(h)
