"""GRU with the reset applied *before* the hidden matmul (TensorFlow 1's ``GRUCell``, Keras
``reset_after=False``), which PyTorch has no fused kernel for, with a hand-written
backward through time.

Equations of :func:`rnnfuse.cells.gru.gru_step_reset_before` (gate order r, z, n)::

    r, z = sigmoid(xw_rz + h W_rz^T);  n = tanh(xw_n + (r * h) W_n^T);  h' = n + z (h - n)

:class:`GRUFunction` stores σr, σz, n and r·h per step; the weight gradients are two
matrix products after the backward loop.  The step is written as in-place operations on
preallocated buffers (the pure function would allocate per step); the tests check the
layer against the reference loop, which runs the pure function.  On CPU in float32/float64
the loop runs in C++ (:mod:`rnnfuse.kernels._ext`); the functions here are the fallback.  A
double backward raises an error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .compiled_steps import step_kernels
from .steps import (
    StepRows,
    compiled_for,
    first_order_only,
    last_rows,
    offsets_rows,
    previous,
    previous_rows,
)

__all__ = ["GRUFunction"]


class GRUFunction(torch.autograd.Function):
    """``apply(steps, last_index, x, weight_ih, bias, h0, weight_hh) -> (outputs (N + 1, H),
    h_final (B, H))``.

    ``x`` (N, F) is the input in the packed layout; ``h0`` the sorted initial state; the
    outputs' last row is zero (the layout's padding row).
    """

    @staticmethod
    def forward(
        ctx: Any,
        steps: StepRows,
        last_index: Tensor,
        x: Tensor,
        weight_ih: Tensor,
        bias: Tensor,
        h0: Tensor,
        weight_hh: Tensor,
    ) -> tuple[Tensor, Tensor]:
        ext = compiled_for(x)
        if ext is None:
            acts = torch.addmm(bias, x, weight_ih.t())  # the input projection of every step
            rhs, hs = _forward(steps, acts, h0, weight_hh)
        else:  # the compiled loop adds the bias with the gates
            acts = torch.mm(x, weight_ih.t())
            rhs, hs = ext.gru_forward(acts, bias, h0, weight_hh, *offsets_rows(steps))
        ctx.steps = steps
        ctx.save_for_backward(x, weight_ih, acts, rhs, hs, h0, weight_hh)
        return hs, last_rows(hs, h0, last_index)

    @staticmethod
    @first_order_only
    def backward(ctx: Any, g_hs: Tensor, g_h: Tensor) -> tuple[Any, ...]:
        x, weight_ih, acts, rhs, hs, h0, weight_hh = ctx.saved_tensors
        ext = compiled_for(acts)
        if ext is None:
            d_gates, d_h0 = _backward(ctx.steps, g_hs, g_h, acts, hs, h0, weight_hh)
        else:
            d_gates, d_h0 = ext.gru_backward(
                acts, hs, h0, g_hs, g_h, weight_hh, *offsets_rows(ctx.steps)
            )
        need, hidden = ctx.needs_input_grad, h0.shape[1]
        d_x = d_gates @ weight_ih if need[2] else None
        d_w_ih = d_gates.t() @ x if need[3] else None
        d_bias = d_gates.sum(0) if need[4] else None
        d_w_hh = None
        if need[6]:
            d_rz, d_n = d_gates[:, : 2 * hidden], d_gates[:, 2 * hidden :]
            d_w_hh = torch.cat([d_rz.t() @ previous_rows(hs, h0, ctx.steps), d_n.t() @ rhs])
        return None, None, d_x, d_w_ih, d_bias, d_h0, d_w_hh


def _forward(steps: StepRows, acts: Tensor, h0: Tensor, weight_hh: Tensor) -> tuple[Tensor, Tensor]:
    """The recurrence.  ``acts`` holds the projected inputs and leaves holding (σr, σz, n);
    returns r·h and the outputs (with the trailing zero row), flat."""
    rows_total, hidden = acts.shape[0], h0.shape[1]
    rz, n = slice(0, 2 * hidden), slice(2 * hidden, None)
    rhs = acts.new_empty(rows_total, hidden)
    hs = acts.new_empty(rows_total + 1, hidden)
    hs[-1].zero_()
    w_rz_t, w_n_t = weight_hh[rz].t(), weight_hh[n].t()
    kernels = step_kernels(acts)
    for t, (offset, rows) in enumerate(steps):
        now = slice(offset, offset + rows)
        h_prev, act = previous(hs, h0, steps, t), acts[now]
        act[:, rz].addmm_(h_prev, w_rz_t)
        if kernels is not None:  # one compiled kernel per elementwise part
            kernels.gru_gates(act[:, rz], h_prev, rhs[now])
            act[:, n].addmm_(rhs[now], w_n_t)
            kernels.gru_update(act[:, n], act[:, hidden : 2 * hidden], h_prev, hs[now])
            continue
        act[:, rz].sigmoid_()
        torch.mul(act[:, :hidden], h_prev, out=rhs[now])
        act[:, n].addmm_(rhs[now], w_n_t).tanh_()
        torch.lerp(act[:, n], h_prev, act[:, hidden : 2 * hidden], out=hs[now])
    return rhs, hs


def _backward(
    steps: StepRows,
    g_hs: Tensor,
    g_h: Tensor,
    acts: Tensor,
    hs: Tensor,
    h0: Tensor,
    weight_hh: Tensor,
) -> tuple[Tensor, Tensor]:
    """Backward through time; returns the gradients of the gate pre-activations (N, 3H)
    (``n``'s taken inside the tanh) and of ``h0``.

    ``dh`` carries the gradient of every sorted sequence's state; a sequence's row is
    untouched until the loop reaches its last step, so it starts as the final state's.
    """
    hidden = h0.shape[1]
    rz, n = slice(0, 2 * hidden), slice(2 * hidden, None)
    d_gates = torch.empty_like(acts)
    dh = g_h.clone()
    kernels = step_kernels(acts)
    for t in range(len(steps) - 1, -1, -1):
        offset, rows = steps[t]
        now = slice(offset, offset + rows)
        dh_t = dh[:rows].add_(g_hs[now])
        h_prev, act, d_act = previous(hs, h0, steps, t), acts[now], d_gates[now]
        if kernels is not None:  # one compiled kernel per elementwise part
            kernels.gru_cell_backward(dh_t, act, h_prev, d_act)
            d_rh = d_act[:, n] @ weight_hh[n]
            carry = torch.empty_like(dh_t)
            kernels.gru_reset_backward(d_rh, dh_t, act, h_prev, d_act, carry)
            torch.addmm(carry, d_act[:, rz], weight_hh[rz], out=dh[:rows])
            continue
        a_r, a_z, a_n = act.split(hidden, 1)
        d_r, d_z, d_n = d_act.split(hidden, 1)
        torch.addcmul(dh_t, dh_t, a_z, value=-1, out=d_n)
        d_n.addcmul_(d_n, a_n * a_n, value=-1)
        torch.mul(dh_t, h_prev - a_n, out=d_z)
        d_rh = d_n @ weight_hh[n]
        torch.mul(d_rh, h_prev, out=d_r)
        d_act[:, rz].mul_(torch.addcmul(act[:, rz], act[:, rz], act[:, rz], value=-1))
        carry = (dh_t * a_z).addcmul_(d_rh, a_r)
        torch.addmm(carry, d_act[:, rz], weight_hh[rz], out=dh[:rows])
    return d_gates, dh
