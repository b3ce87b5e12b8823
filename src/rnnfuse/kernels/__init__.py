"""How one layer in one direction is run over a sequence.

:func:`run_layer` is the single entry point the stack uses.  :func:`select_path` asks the
cell (:meth:`~rnnfuse.cells.RecurrentCell.kernel_spec`) and picks the fastest path whose
semantics equal the cell's; it never tests the cell's class:

========================  ===================================================================
``"fused"``               every sequence full: one call of PyTorch's fused kernel
                          (:mod:`.fused`; the spec has a fused ``mode``: LSTM without
                          peepholes/clips, GRU reset-after, RNN)
``"fused-segments"``      ragged batch on CPU: a few fused calls over length-sorted segments
                          (:func:`.ragged.run_fused_segments`); an LSTM takes ``"bptt"``
                          instead where the compiled BPTT loop runs (:func:`.ragged.ragged_cpu_path`)
``"fused-packed"``        ragged batch on CUDA: one packed call (cuDNN handles it natively)
``"bptt"``                what PyTorch has no kernel for (LSTM peepholes/clips, GRU
                          reset-before), and an LSTM with projection on CPU (PyTorch's
                          leaves oneDNN there): hand-written backward through time (:mod:`.bptt`)
``"loop"``                anything else (a cell without a spec, e.g. a user's own cell
                          class; an empty batch): the reference loop :func:`.loop.run_loop`
========================  ===================================================================

Every path equals the reference loop to floating-point rounding, values and gradients.

While a compiler or exporter traces (:func:`tracing`: ``torch.compile``, ``torch.export``,
a fake-tensor mode), the fused and BPTT paths run inside the registered operator
``torch.ops.rnnfuse.layer`` (:mod:`.ops`), so that the lengths' values never enter a
traced Python decision; eager calls take the paths above directly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import tracing
from ..cells.base import RecurrentCell
from ..cells.spec import KernelSpec
from .bptt import run_bptt
from .ops import layer_op, spec_to_op_args, state_from_list, state_to_list
from .fused import run_fused_full
from .loop import reverse_within_lengths, run_loop
from .ragged import ragged_cpu_path, run_fused_packed, run_fused_segments

__all__ = ["run_layer", "select_path", "run_loop", "reverse_within_lengths", "tracing"]


def _traced_path(spec: KernelSpec | None, x: Tensor) -> str:
    """The path while tracing: decided from the spec, the device and autocast only."""
    if spec is None:
        return "loop"
    if spec.mode is not None and not (spec.has_projection and not x.is_cuda):
        return "fused"
    if spec.bptt is not None and not torch.is_autocast_enabled(x.device.type):
        return "bptt"
    return "loop"


def select_path(cell: RecurrentCell, x: Tensor, lengths: Tensor | None = None) -> str:
    """The path :func:`run_layer` takes for ``cell`` on ``x`` (B, T, F) with ``lengths``."""
    return _path(cell.kernel_spec(x.dtype, x.device), x, lengths)


def _path(spec: KernelSpec | None, x: Tensor, lengths: Tensor | None) -> str:
    if spec is None or x.shape[0] == 0 or x.shape[1] == 0:
        return "loop"
    if lengths is not None and int(lengths.max()) == 0:
        return "loop"
    if spec.mode is not None and not (spec.has_projection and not x.is_cuda):
        if lengths is None:
            return "fused"
        return "fused-packed" if x.is_cuda else ragged_cpu_path(spec, x)
    # On CPU, PyTorch's LSTM with a projection leaves oneDNN for a per-step native loop
    # (and warns): the BPTT kernel runs as fast on full batches and faster on ragged ones.
    if spec.bptt is not None:
        # the BPTT kernels' in-place steps take no part in autocast; the loop's ops do
        return "loop" if torch.is_autocast_enabled(x.device.type) else "bptt"
    return "loop"


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
    path = _path(spec, x, lengths)
    if path == "fused":
        return run_fused_full(cell, x, state, reverse, spec=spec)
    if path == "fused-segments" and lengths is not None:
        return run_fused_segments(cell, x, lengths, state, reverse, spec=spec)
    if path == "fused-packed" and lengths is not None:
        return run_fused_packed(cell, x, lengths, state, reverse, spec=spec)
    if path == "bptt":
        return run_bptt(cell, x, lengths, state, reverse, spec=spec)
    return run_loop(cell, x, lengths, state, reverse)


def _run_traced(
    cell: RecurrentCell, spec: KernelSpec | None, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    """:func:`run_layer` while tracing: one ``rnnfuse::layer`` operator call (or the
    reference loop, whose steps are plain tensor operations)."""
    path = _traced_path(spec, x)
    if path == "loop" or spec is None:
        return run_loop(cell, x, lengths, state, reverse)
    kind, weights, peepholes, cell_clip, proj_clip = spec_to_op_args(spec, path)
    lens = x.new_empty(0, dtype=torch.int64) if lengths is None else lengths
    out = layer_op(x, lens, state_to_list(state), weights, kind, reverse, peepholes, cell_clip, proj_clip)
    return out[0], state_from_list(out[1:])
