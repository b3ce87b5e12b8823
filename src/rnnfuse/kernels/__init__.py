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
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..cells.base import RecurrentCell
from ..cells.spec import KernelSpec
from .bptt import run_bptt
from .fused import run_fused_full
from .loop import reverse_within_lengths, run_loop
from .ragged import ragged_cpu_path, run_fused_packed, run_fused_segments

__all__ = ["run_layer", "select_path", "run_loop", "reverse_within_lengths"]


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
    path = _path(spec, x, lengths)
    if path == "fused":
        return run_fused_full(cell, x, state, reverse, spec=spec)
    if path == "fused-segments":
        return run_fused_segments(cell, x, lengths, state, reverse, spec=spec)
    if path == "fused-packed":
        return run_fused_packed(cell, x, lengths, state, reverse, spec=spec)
    if path == "bptt":
        return run_bptt(cell, x, lengths, state, reverse, spec=spec)
    return run_loop(cell, x, lengths, state, reverse)
