"""The one choice of path for a layer and for a stack, made from the kernel specs, and the
call of a layer's path.

:func:`run_layer` (eager) and the ``rnnfuse::layer`` operator (:mod:`.ops`, what compiled and
exported graphs call) both run a layer through :func:`run_spec`, so the path a compiled model
takes at run time is the one eager takes for the same spec, batch and lengths.
:func:`traced_path` is the choice made while tracing, from what a graph may depend on (the
spec, the device, autocast): ``"fused"``, ``"bptt"`` (both become the operator) or ``"loop"``.

For a plain stack (one direction, each layer's outputs the next one's input as they are),
:func:`choose_stack_path` decides whether its layers run as one call over the padding
(``"fused-padded-stack"``: :mod:`.padded_stack`) or ``"layers"``, each layer on its own path;
:func:`rnnfuse.kernels.run_stack` asks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..cells.base import RecurrentCell
from ..cells.constants import tracing
from ..cells.spec import KernelSpec
from ..state import state_output
from .bptt import run_bptt
from .fused import run_fused_full
from .loop import run_loop
from .padded import run_fused_padded
from .ragged import ragged_cpu_path, run_fused_packed, run_fused_segments

__all__ = [
    "choose_path",
    "traced_path",
    "run_spec",
    "nothing_runs",
    "choose_stack_path",
    "padded_stack_specs",
]


def nothing_runs(x: Tensor, lengths: Tensor | None) -> bool:
    """Whether no step runs: an empty batch, no time steps or every length zero."""
    return x.shape[0] == 0 or x.shape[1] == 0 or (lengths is not None and int(lengths.max()) == 0)


def _fused_mode(spec: KernelSpec, x: Tensor) -> bool:
    # On CPU, PyTorch's LSTM with a projection leaves oneDNN for a per-step native loop
    # (and warns): the BPTT kernel runs as fast on full batches and faster on ragged ones.
    return spec.mode is not None and not (spec.has_projection and not x.is_cuda)


def _bptt_or_loop(spec: KernelSpec, x: Tensor) -> str:
    # the BPTT kernels' in-place steps take no part in autocast; the loop's ops do
    if spec.bptt is not None and not torch.is_autocast_enabled(x.device.type):
        return "bptt"
    return "loop"


def choose_path(spec: KernelSpec | None, x: Tensor, lengths: Tensor | None) -> str:
    """The eager path for a layer whose cell has ``spec``, on ``x`` (B, T, F) with
    ``lengths`` (``None``: every sequence full); reads the lengths' values."""
    if spec is None or nothing_runs(x, lengths):
        return "loop"
    if _fused_mode(spec, x):
        if lengths is None:
            return "fused"
        return "fused-packed" if x.is_cuda else ragged_cpu_path(spec, x)
    return _bptt_or_loop(spec, x)


def traced_path(spec: KernelSpec | None, x: Tensor) -> str:
    """The path while tracing: decided from the spec, the device and autocast only."""
    if spec is None:
        return "loop"
    return "fused" if _fused_mode(spec, x) else _bptt_or_loop(spec, x)


def run_spec(
    spec: KernelSpec | None,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool,
    cell: RecurrentCell | None,
) -> tuple[Tensor, Any]:
    """Run the layer on the path :func:`choose_path` picks; returns ``(outputs, final_state)``.

    ``cell`` runs the reference loop where that is the path.  ``None`` (the operator, which
    has only the spec): a layer where nothing runs returns zeros and ``state``, and a spec
    whose only kernel is BPTT runs it even under autocast (an operator's kernels run at
    their inputs' dtype)."""
    path = choose_path(spec, x, lengths)
    if path == "loop" and cell is None:
        if spec is None or spec.bptt is None or nothing_runs(x, lengths):
            return x.new_zeros(x.shape[0], x.shape[1], state_output(state).shape[-1]), state
        path = "bptt"
    given: Any = cell  # the fast paths read the spec given to them, not the cell
    if path == "fused":
        return run_fused_full(given, x, state, reverse, spec=spec)
    if path == "fused-segments" and lengths is not None:
        return run_fused_segments(given, x, lengths, state, reverse, spec=spec)
    if path == "fused-padded" and lengths is not None:
        return run_fused_padded(given, x, lengths, state, reverse, spec=spec, checked=True)
    if path == "fused-packed" and lengths is not None:
        return run_fused_packed(given, x, lengths, state, reverse, spec=spec)
    if path == "bptt":
        return run_bptt(given, x, lengths, state, reverse, spec=spec)
    return run_loop(given, x, lengths, state, reverse)


def padded_stack_specs(
    cells: Sequence[RecurrentCell], x: Tensor, lengths: Tensor | None
) -> list[KernelSpec] | None:
    """The layers' kernel specs where the plain stack of ``cells`` runs as one call over the
    padding on ``x`` (B, T, F) with ``lengths``: eager, on CPU, ragged, and every layer an
    LSTM taking the ``fused-padded`` path (:func:`.ragged.ragged_cpu_path`); else ``None``."""
    if lengths is None or x.device.type != "cpu" or tracing() or x.shape[1] == 0:
        return None
    specs = []
    for cell in cells:
        spec = cell.kernel_spec(x.dtype, x.device)
        if spec is None or spec.mode != "lstm" or ragged_cpu_path(spec, x) != "fused-padded":
            return None
        specs.append(spec)
    return specs


def choose_stack_path(cells: Sequence[RecurrentCell], x: Tensor, lengths: Tensor | None) -> str:
    """``"fused-padded-stack"`` where the plain stack of ``cells`` runs as one call
    (:func:`padded_stack_specs`), else ``"layers"``: each layer on :func:`choose_path`'s path.
    The one call still falls back to the layers where it cannot hold the states exactly
    (:func:`.padded_stack.run_padded_stack` returns ``None``)."""
    return "layers" if padded_stack_specs(cells, x, lengths) is None else "fused-padded-stack"
