"""How one layer in one direction, or a plain stack of layers, is run over a sequence.

:func:`run_layer` and :func:`run_stack` are the entry points the stack uses.
:func:`select_path` asks the cell (:meth:`~rnnfuse.cells.RecurrentCell.kernel_spec`) and
picks the fastest path whose semantics equal the cell's (:mod:`.dispatch`, the one place
that choice is made); it never tests the cell's class:

========================  ===================================================================
``"fused"``               every sequence full: one call of PyTorch's fused kernel
                          (:mod:`.fused`; the spec has a fused ``mode``: LSTM without
                          peepholes/clips, GRU reset-after, RNN)
``"fused-padded"``        small ragged LSTM batch on CPU that needs no gradient (inference),
                          two or more threads: one fused call over the padding, exact final
                          states held through it (:mod:`.padded`, :func:`.ragged.ragged_cpu_path`)
``"fused-segments"``      ragged batch on CPU: a few fused calls over length-sorted segments
                          (:func:`.ragged.run_fused_segments`); an LSTM takes ``"bptt"``
                          instead where the compiled BPTT loop runs
                          (:func:`.ragged.ragged_cpu_path`)
``"fused-packed"``        ragged batch on CUDA: one packed call (cuDNN handles it natively)
``"bptt"``                what PyTorch has no kernel for (LSTM peepholes/clips, GRU
                          reset-before), and an LSTM with projection on CPU (PyTorch's
                          leaves oneDNN there): hand-written backward through time (:mod:`.bptt`)
``"loop"``                anything else (a cell without a spec, e.g. a user's own cell
                          class; an empty batch): the reference loop :func:`.loop.run_loop`
========================  ===================================================================

Every path equals the reference loop to floating-point rounding, values and gradients; NaN
and inf at a valid step flow on as in PyTorch's kernels run per sequence, and outputs past
each length are exactly zero whatever the input's padding holds (which reaches no gradient).

While a compiler or exporter traces (:func:`tracing`: ``torch.compile``, ``torch.export``,
a fake-tensor mode), the fused and BPTT paths run inside the registered operator
``torch.ops.rnnfuse.layer`` (:mod:`.ops`), so that the lengths' values never enter a
traced Python decision; at run time the operator takes the path of the table above through
the same :func:`.dispatch.run_spec` that eager calls use directly.

:func:`run_stack` runs a plain stack (one direction, no residual connections, no dropout at
work: each layer's outputs are the next one's input as they are).  Its path, chosen by
:func:`.dispatch.choose_stack_path` (:func:`select_stack_path` tells which):

========================  ===================================================================
``"fused-padded-stack"``  every layer an LSTM on the ``"fused-padded"`` path: the layers in one
                          call over the padding (:mod:`.padded_stack`); where that call cannot
                          hold the states exactly (a NaN or inf came in, an initial state
                          that needs a gradient), the layers run one by one instead
``"layers"``              :func:`run_layer` for each layer, bottom first
========================  ===================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .._checks import tracing
from .._onnx_registration import warn_if_missing
from ..cells.base import RecurrentCell
from ..cells.spec import KernelSpec
from .dispatch import choose_path, choose_stack_path, padded_stack_specs, run_spec, traced_path
from .loop import reverse_within_lengths, run_loop
from .ops import layer_op, spec_to_op_args, state_from_list, state_to_list
from .padded_stack import run_padded_stack

__all__ = [
    "run_layer",
    "run_stack",
    "select_path",
    "select_stack_path",
    "run_loop",
    "reverse_within_lengths",
    "tracing",
]


def select_path(cell: RecurrentCell, x: Tensor, lengths: Tensor | None = None) -> str:
    """The path :func:`run_layer` takes for ``cell`` on ``x`` (B, T, F) with ``lengths``."""
    return choose_path(cell.kernel_spec(x.dtype, x.device), x, lengths)


def run_layer(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool = False,
) -> tuple[Tensor, Any]:
    """Run one layer over batch-first ``x`` (B, T, F).

    ``lengths`` is ``None`` (every sequence full) or an int64 tensor (B,) on ``x``'s
    device, in any order; ``reverse=True`` runs each sequence backwards within its length
    (outputs reversed back).  Returns ``(outputs (B, T, H_out), final_state)``: outputs are
    zero past each length (they may be a non-contiguous view), the final state is the one
    at each sequence's last step.
    """
    spec = cell.kernel_spec(x.dtype, x.device)
    if tracing(x):
        return _run_traced(cell, spec, x, lengths, state, reverse)
    return run_spec(spec, x, lengths, state, reverse, cell)


def select_stack_path(
    cells: Sequence[RecurrentCell], x: Tensor, lengths: Tensor | None = None
) -> str:
    """The path :func:`run_stack` takes for the plain stack of ``cells`` on ``x`` (B, T, F)
    with ``lengths``: ``"fused-padded-stack"`` or ``"layers"``."""
    return choose_stack_path(cells, x, lengths)


def run_stack(
    cells: Sequence[RecurrentCell],
    x: Tensor,
    lengths: Tensor | None,
    states: Sequence[Any] | None = None,
) -> tuple[Tensor, tuple[Any, ...]]:
    """Run a plain stack of ``cells`` (layer k's outputs are layer k+1's input) over
    batch-first ``x``, on the path :func:`.dispatch.choose_stack_path` picks.

    Args:
        cells: the layers, bottom first, each reading the one below's outputs.
        x: ``(B, T, F)``, ``F`` the bottom cell's input size.
        lengths: ``None`` (every sequence full) or an int64 tensor ``(B,)`` on ``x``'s
            device, in any order.
        states: one layer state per cell (``LSTMState`` or ``Tensor (B, H)``), or ``None``
            for zeros.  Not checked here (:class:`~rnnfuse.StackedRNN` checks them).

    Returns:
        ``(outputs (B, T, H_top), finals)``: the top layer's outputs, zero past each
        length, and a tuple with each layer's state at each sequence's last step.

    Example:
        >>> import torch
        >>> from rnnfuse import LSTMCell
        >>> cells = [LSTMCell(3, 4), LSTMCell(4, 4)]
        >>> x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
        >>> with torch.no_grad():
        ...     y, finals = run_stack(cells, x, lengths)
        >>> y.shape, len(finals), tuple(finals[1].h.shape)
        (torch.Size([2, 5, 4]), 2, (2, 4))
    """
    specs = padded_stack_specs(cells, x, lengths)
    if specs is not None and lengths is not None:
        fast = run_padded_stack(specs, x, lengths, states)
        if fast is not None:
            return fast[0], tuple(fast[1])
    if states is None:
        states = [cell.initial_state(x.shape[0], x.device, x.dtype) for cell in cells]
    finals = []
    for cell, state in zip(cells, states, strict=True):
        x, final = run_layer(cell, x, lengths, state)
        finals.append(final)
    return x, tuple(finals)


def _run_traced(
    cell: RecurrentCell,
    spec: KernelSpec | None,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool,
) -> tuple[Tensor, Any]:
    """:func:`run_layer` while tracing: one ``rnnfuse::layer`` operator call (or the
    reference loop, whose steps are plain tensor operations)."""
    path = traced_path(spec, x)
    if path == "loop" or spec is None:
        return run_loop(cell, x, lengths, state, reverse)
    warn_if_missing()  # a plain torch.onnx.export would not find the operator's translation
    kind, weights, peepholes, cell_clip, proj_clip = spec_to_op_args(spec, path)
    lens = x.new_empty(0, dtype=torch.int64) if lengths is None else lengths
    out = layer_op(
        x, lens, state_to_list(state), weights, kind, reverse, peepholes, cell_clip, proj_clip
    )
    return out[0], state_from_list(out[1:])
