"""How one layer in one direction is run over a sequence.

:func:`run_layer` is the single entry point the stack uses.  It picks the fastest path
whose semantics equal the cell's and falls back to the reference loop
(:func:`rnnfuse.kernels.loop.run_loop`) otherwise.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..cells.base import RecurrentCell
from .loop import reverse_within_lengths, run_loop

__all__ = ["run_layer", "run_loop", "reverse_within_lengths"]


def run_layer(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool = False,
) -> tuple[Tensor, Any]:
    """Run one layer over batch-first ``x`` (B, T, F).

    ``lengths`` is ``None`` (every sequence full) or an int64 tensor (B,) on ``x``'s
    device; ``reverse=True`` runs each sequence backwards within its length.  Returns
    ``(outputs (B, T, H_out), final_state)``.
    """
    return run_loop(cell, x, lengths, state, reverse)
