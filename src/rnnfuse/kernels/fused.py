"""Layers mapped onto PyTorch's fused RNN kernels (``torch._VF.lstm``/``gru``/``rnn_*``:
oneDNN or the native kernel on CPU, cuDNN on GPU), wherever the semantics are the same.

The cell's own parameters go to the kernel as they are, in the order ``torch.nn.LSTM``
passes its flat weights for one layer and one direction: ``[w_ih, w_hh, b_ih, b_hh(,
w_hr)]``, ``has_biases=True``, ``num_layers=1``, ``dropout=0`` (the stack applies rnnfuse's
dropout between layers), ``bidirectional=False``.  What rnnfuse does not store (a second
bias: zeros, or TF1's run-time ``forget_bias`` in the f slot) is a cached constant.

* LSTM without peepholes and clips (projection allowed): ``_VF.lstm``.
* GRU with ``reset_after=True``: ``_VF.gru``.  RNN: ``_VF.rnn_tanh`` / ``_VF.rnn_relu``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, _VF

from ..cells import GRUCell, LSTMCell, RNNCell
from ..cells.base import RecurrentCell
from ..state import LSTMState
from .constants import forget_bias_vector, zero_vector

__all__ = ["fused_supported", "fused_weights", "fused_call", "run_fused_full"]


def fused_supported(cell: RecurrentCell) -> bool:
    """Whether ``cell``'s equations are exactly those of a PyTorch fused kernel."""
    if type(cell) is LSTMCell:
        return not cell.peepholes and cell.cell_clip is None and cell.proj_clip is None
    if type(cell) is GRUCell:
        return cell.reset_after
    return type(cell) is RNNCell


def fused_weights(cell: RecurrentCell, dtype: torch.dtype, device: torch.device) -> list[Tensor]:
    """The flat weights of one layer and direction, in ``torch.nn.RNNBase`` order."""
    if isinstance(cell, LSTMCell):
        hidden = 4 * cell.hidden_size
        b_hh = forget_bias_vector(cell, dtype, device) if cell.forget_bias else zero_vector(cell, hidden, dtype, device)
        weights = [cell.weight_ih, cell.weight_hh, cell.bias, b_hh]
        if cell.proj_size is not None:
            weights.append(cell.weight_hr)
        return weights
    if isinstance(cell, GRUCell):
        return [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    return [cell.weight_ih, cell.weight_hh, cell.bias, zero_vector(cell, cell.hidden_size, dtype, device)]


def _needs_grad(x: Tensor, state: Any, weights: list[Tensor]) -> bool:
    if not torch.is_grad_enabled():
        return False
    tensors = [x, *weights, *(state if isinstance(state, tuple) else (state,))]
    return any(t.requires_grad for t in tensors)


def fused_call(
    cell: RecurrentCell,
    x: Tensor,
    state: Any,
    batch_sizes: Tensor | None = None,
) -> tuple[Tensor, Any]:
    """One fused call over time-major ``x`` (T, B, F), or packed ``x`` (N, F) with
    ``batch_sizes`` (CPU int64).  ``state`` is the layer state (B, ...); returns
    ``(outputs, final_state)`` with the final state of each sequence's last step."""
    weights = fused_weights(cell, x.dtype, x.device)
    train = _needs_grad(x, state, weights)
    if isinstance(cell, LSTMCell):
        hx = (state.h.unsqueeze(0), state.c.unsqueeze(0))
        if batch_sizes is None:
            out, h, c = _VF.lstm(x, hx, weights, True, 1, 0.0, train, False, False)
        else:
            out, h, c = _VF.lstm(x, batch_sizes, hx, weights, True, 1, 0.0, train, False)
        return out, LSTMState(c[0], h[0])
    if isinstance(cell, GRUCell):
        fn = _VF.gru
    else:
        fn = _VF.rnn_tanh if cell.nonlinearity == "tanh" else _VF.rnn_relu
    if batch_sizes is None:
        out, h = fn(x, state.unsqueeze(0), weights, True, 1, 0.0, train, False, False)
    else:
        out, h = fn(x, batch_sizes, state.unsqueeze(0), weights, True, 1, 0.0, train, False)
    return out, h[0]


def run_fused_full(cell: RecurrentCell, x: Tensor, state: Any, reverse: bool) -> tuple[Tensor, Any]:
    """Every sequence full length: one fused call.  ``x`` is (B, T, F); the outputs are
    returned as a batch-first view of the kernel's time-major result."""
    x_tm = x.transpose(0, 1)
    if reverse:
        x_tm = x_tm.flip(0)
    out, final = fused_call(cell, x_tm, state)
    if reverse:
        out = out.flip(0)
    return out.transpose(0, 1), final
