"""How one layer in one direction is run over a sequence.

:func:`run_layer` is the single entry point the stack uses.  :func:`select_path` asks the
cell (:meth:`~rnnfuse.cells.RecurrentCell.kernel_spec`) and picks the fastest path whose
semantics equal the cell's (:mod:`.dispatch`, the one place that choice is made); it never
tests the cell's class:

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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import tracing
from .._onnx_registration import warn_if_missing
from ..cells.base import RecurrentCell
from ..cells.spec import KernelSpec
from .dispatch import choose_path, run_spec, traced_path
from .loop import reverse_within_lengths, run_loop
from .ops import layer_op, spec_to_op_args, state_from_list, state_to_list

__all__ = ["run_layer", "select_path", "run_loop", "reverse_within_lengths", "tracing"]


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
