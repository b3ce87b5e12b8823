"""Layers mapped onto PyTorch's fused RNN kernels (``torch._VF.lstm``/``gru``/``rnn_*``:
oneDNN or the native kernel on CPU, cuDNN on GPU), wherever the semantics are the same.

A cell says whether its step is one of them (:meth:`RecurrentCell.kernel_spec`: ``mode``
and ``fused_weights``).  The weights go to the kernel as the spec gives them, in the order
``torch.nn.LSTM`` passes its flat weights for one layer and one direction: ``[w_ih, w_hh,
b_ih, b_hh(, w_hr)]``, ``has_biases=True``, ``num_layers=1``, ``dropout=0`` (the stack
applies rnnfuse's dropout between layers), ``bidirectional=False``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import _VF, Tensor

from ..cells.base import RecurrentCell
from ..cells.spec import KernelSpec
from ..state import LSTMState, flatten_state

__all__ = ["fused_spec", "fused_call", "run_fused_full", "needs_grad"]

_KERNELS = {"gru": _VF.gru, "rnn_tanh": _VF.rnn_tanh, "rnn_relu": _VF.rnn_relu}


def needs_grad(x: Tensor, state: Any, weights: tuple[Tensor, ...]) -> bool:
    """Whether autograd records a call on ``x``, ``state`` (``()``: not known) and ``weights``."""
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in (x, *weights, *flatten_state(state)))


def fused_spec(cell: RecurrentCell, x: Tensor, spec: KernelSpec | None = None) -> KernelSpec:
    """``spec`` or, when ``None``, ``cell``'s spec for ``x``; ``ValueError`` unless it has a
    fused kernel."""
    if spec is None:
        spec = cell.kernel_spec(x.dtype, x.device)
    if spec is None or spec.mode is None or spec.fused_weights is None:
        raise ValueError(
            f"cell: expected a cell whose step is a PyTorch fused kernel, got {cell!r} "
            f"(its kernel_spec has {'no spec' if spec is None else 'no fused mode'}); "
            "run it with run_layer"
        )
    return spec


def fused_call(
    spec: KernelSpec,
    x: Tensor,
    state: Any,
    batch_sizes: Tensor | None = None,
) -> tuple[Tensor, Any]:
    """One fused call over time-major ``x`` (T, B, F), or packed ``x`` (N, F) with
    ``batch_sizes`` (CPU int64).  ``spec`` has a fused ``mode``; ``state`` is the layer
    state (B, ...).  Returns ``(outputs, final_state)``, the final state of each sequence's
    last step."""
    weights, mode = spec.fused_weights, spec.mode
    if weights is None or mode is None:
        raise ValueError(f"spec: expected a spec with a fused kernel, got {spec!r}")
    train = needs_grad(x, state, weights)
    if mode == "lstm":
        hx = (state.h.unsqueeze(0), state.c.unsqueeze(0))
        if batch_sizes is None:
            out, h, c = _VF.lstm(x, hx, weights, True, 1, 0.0, train, False, False)
        else:
            out, h, c = _VF.lstm(x, batch_sizes, hx, weights, True, 1, 0.0, train, False)
        return out, LSTMState(c[0], h[0])
    fn = _KERNELS[mode]
    if batch_sizes is None:
        out, h = fn(x, state.unsqueeze(0), weights, True, 1, 0.0, train, False, False)
    else:
        out, h = fn(x, batch_sizes, state.unsqueeze(0), weights, True, 1, 0.0, train, False)
    return out, h[0]


def run_fused_full(
    cell: RecurrentCell, x: Tensor, state: Any, reverse: bool, *, spec: KernelSpec | None = None
) -> tuple[Tensor, Any]:
    """Every sequence full length: one fused call.  ``x`` is (B, T, F); the outputs are
    returned as a batch-first view of the kernel's time-major result.  ``spec``: the cell's,
    when the caller has it already."""
    spec = fused_spec(cell, x, spec)
    x_tm = x.transpose(0, 1)
    if reverse:
        x_tm = x_tm.flip(0)
    out, final = fused_call(spec, x_tm, state)
    if reverse:
        out = out.flip(0)
    return out.transpose(0, 1), final
