"""Running a layer through the hand-written BPTT kernels (:mod:`.bptt_lstm`, :mod:`.bptt_gru`).

The cell's spec names the kernel by the type of its arguments (:class:`LSTMKernelArgs`,
:class:`GRUKernelArgs`).  The batch is moved once into the packed layout (sorted by
length, reversed within each length for the backward direction, nothing stored past a
length), the input projection of every step is one matrix product, and one autograd node
runs the whole recurrence: on CPU (float32, float64) in the C++ loop of
:mod:`rnnfuse.kernels._ext`, compiled on first use, else in the kernels' pure-PyTorch loop.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..cells.base import RecurrentCell
from ..cells.spec import GRUKernelArgs, KernelSpec, LSTMKernelArgs
from ..state import LSTMState
from .bptt_gru import GRUFunction
from .bptt_lstm import LSTMFunction
from .layout import Layout, layout_for
from .steps import step_rows

__all__ = ["run_bptt", "run_bptt_lstm", "run_bptt_gru"]


def _packed(x: Tensor, lengths: Tensor | None, reverse: bool) -> Layout:
    return layout_for(lengths, x.shape[1], reverse, None, x.shape[0], x.device)


def run_bptt(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool = False,
    *,
    spec: KernelSpec | None = None,
) -> tuple[Tensor, Any]:
    """The BPTT kernel ``cell``'s spec names, over ``x`` (B, T, F); see ``run_layer``.
    ``spec``: the cell's, when the caller has it already."""
    args = _bptt_args(cell, x, spec)
    if isinstance(args, LSTMKernelArgs):
        return _run_lstm(args, x, lengths, state, reverse)
    if isinstance(args, GRUKernelArgs):
        return _run_gru(args, x, lengths, state, reverse)
    raise ValueError(f"cell: expected a cell with a BPTT kernel in its kernel_spec, got {cell!r}")


def run_bptt_lstm(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: LSTMState, reverse: bool = False
) -> tuple[Tensor, LSTMState]:
    """An :class:`LSTMCell` with any options, over ``x`` (B, T, F); see ``run_layer``."""
    return _run_lstm(_expect(cell, x, LSTMKernelArgs, "an LSTMCell"), x, lengths, state, reverse)


def run_bptt_gru(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Tensor, reverse: bool = False
) -> tuple[Tensor, Tensor]:
    """A reset-before :class:`GRUCell` over ``x`` (B, T, F); see ``run_layer``."""
    expected = "a GRUCell with reset_after=False (reset_after=True maps onto torch's GRU)"
    return _run_gru(_expect(cell, x, GRUKernelArgs, expected), x, lengths, state, reverse)


def _bptt_args(cell: RecurrentCell, x: Tensor, spec: KernelSpec | None = None) -> Any:
    """The BPTT kernel arguments of ``spec`` (default: ``cell``'s), or ``None``."""
    if spec is None:
        spec = cell.kernel_spec(x.dtype, x.device)
    return None if spec is None or spec.bptt is None else spec.bptt()


def _expect(cell: RecurrentCell, x: Tensor, kind: type, expected: str) -> Any:
    args = _bptt_args(cell, x)
    if not isinstance(args, kind):
        raise ValueError(f"cell: expected {expected}, got {cell!r}")
    return args


def _run_lstm(
    args: LSTMKernelArgs, x: Tensor, lengths: Tensor | None, state: LSTMState, reverse: bool
) -> tuple[Tensor, LSTMState]:
    layout = _packed(x, lengths, reverse)
    start = layout.sort(state)
    hs, c, h = LSTMFunction.apply(
        step_rows(layout),
        layout.last_index,
        args.cell_clip,
        args.proj_clip,
        layout.gather_input(x),
        args.weight_ih,
        args.bias,
        start.c,
        start.h,
        args.weight_hh,
        args.peepholes,
        args.weight_hr,
    )
    return layout.scatter_output(hs), layout.unsort(LSTMState(c, h))


def _run_gru(
    args: GRUKernelArgs, x: Tensor, lengths: Tensor | None, state: Tensor, reverse: bool
) -> tuple[Tensor, Tensor]:
    layout = _packed(x, lengths, reverse)
    hs, h = GRUFunction.apply(
        step_rows(layout),
        layout.last_index,
        layout.gather_input(x),
        args.weight_ih,
        args.bias,
        layout.sort(state),
        args.weight_hh,
    )
    return layout.scatter_output(hs), layout.unsort(h)
