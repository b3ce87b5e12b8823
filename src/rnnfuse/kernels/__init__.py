"""How one layer in one direction is run over a sequence.

:func:`run_layer` is the single entry point the stack uses.  :func:`select_path` picks the
fastest path whose semantics equal the cell's:

========================  ===================================================================
``"fused"``               every sequence full: one call of PyTorch's fused kernel
                          (:mod:`.fused`; LSTM without peepholes/clips, GRU reset-after, RNN)
``"fused-segments"``      ragged batch on CPU: a few fused calls over length-sorted segments
                          (:func:`.ragged.run_fused_segments`)
``"fused-packed"``        ragged batch on CUDA: one packed call (cuDNN handles it natively)
``"bptt"``                what PyTorch has no kernel for (LSTM peepholes/clips, GRU
                          reset-before), and an LSTM with projection on CPU (PyTorch's
                          leaves oneDNN there): hand-written backward through time (:mod:`.bptt`)
``"loop"``                anything else (a user's own cell class, an empty batch): the
                          reference loop :func:`.loop.run_loop`
========================  ===================================================================

Every path equals the reference loop to floating-point rounding, values and gradients.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..cells import GRUCell, LSTMCell
from ..cells.base import RecurrentCell
from .bptt import run_bptt_gru, run_bptt_lstm
from .fused import fused_supported, run_fused_full
from .loop import reverse_within_lengths, run_loop
from .ragged import run_fused_packed, run_fused_segments

__all__ = ["run_layer", "select_path", "run_loop", "reverse_within_lengths", "PATHS"]

PATHS = ("fused", "fused-segments", "fused-packed", "bptt", "loop")


def select_path(cell: RecurrentCell, x: Tensor, lengths: Tensor | None = None) -> str:
    """The path :func:`run_layer` takes for ``cell`` on ``x`` (B, T, F) with ``lengths``."""
    if x.shape[0] == 0 or x.shape[1] == 0:
        return "loop"
    if lengths is not None and int(lengths.max()) == 0:
        return "loop"
    if fused_supported(cell) and not _projection_on_cpu(cell, x):
        if lengths is None:
            return "fused"
        return "fused-packed" if x.is_cuda else "fused-segments"
    if type(cell) is LSTMCell or type(cell) is GRUCell:
        # the BPTT kernels' in-place steps take no part in autocast; the loop's ops do
        return "loop" if torch.is_autocast_enabled(x.device.type) else "bptt"
    return "loop"


def _projection_on_cpu(cell: RecurrentCell, x: Tensor) -> bool:
    """On CPU, PyTorch's LSTM with a projection leaves oneDNN for a per-step native loop
    (and warns): the BPTT kernel runs as fast on full batches and faster on ragged ones."""
    return isinstance(cell, LSTMCell) and cell.proj_size is not None and not x.is_cuda


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
    path = select_path(cell, x, lengths)
    if path == "fused":
        return run_fused_full(cell, x, state, reverse)
    if path == "fused-segments":
        return run_fused_segments(cell, x, lengths, state, reverse)
    if path == "fused-packed":
        return run_fused_packed(cell, x, lengths, state, reverse)
    if path == "bptt":
        run = run_bptt_lstm if isinstance(cell, LSTMCell) else run_bptt_gru
        return run(cell, x, lengths, state, reverse)
    return run_loop(cell, x, lengths, state, reverse)
