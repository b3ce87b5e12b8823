"""LSTM with a hand-written backward through time, for what PyTorch's fused LSTM lacks:
peepholes, ``cell_clip`` and ``proj_clip`` (TF1's ``LSTMCell``), with or without projection.

:class:`LSTMFunction` is one autograd node for the whole layer: the input projection of
every step is one matrix product, the recurrence runs over the packed layout storing per
step the gate activations, the cell state and its tanh, and the backward walks the steps
once in reverse computing the gate gradients; the weight gradients are then one matrix
product each.  No autograd graph is built per step.  The equations are those of
:func:`rnnfuse.cells.lstm.lstm_step` (gate order i, f, g, o), written here once more as
in-place operations on preallocated buffers: the pure functions would allocate every
intermediate per step, which is what this kernel exists to avoid.  The tests check the
step against the pure one (``test_bptt_lstm_step_equals_the_pure_step``) and the whole
layer against the reference loop.

On CPU in float32/float64 the time loop runs in C++ (:mod:`rnnfuse.kernels._ext`: per step
one matrix product and one fused, vectorised pass for the gates, the cell update and, in the
backward, the peephole gradients); :func:`_forward` and :func:`_backward` here are the same
equations in PyTorch operations, the fallback where the extension cannot be built, and the
loop on CUDA, where each step's elementwise part is one compiled kernel
(:mod:`rnnfuse.kernels.compiled_steps`).

The backward is not itself differentiable: a double backward raises an error.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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

__all__ = ["LSTMFunction"]


class _Recurrence(NamedTuple):
    """What the loop needs besides the data: the steps, clips and recurrent weights."""

    steps: StepRows
    cell_clip: float | None
    proj_clip: float | None
    weight_hh: Tensor
    peepholes: Tensor | None  # (3, H): w_i_diag, w_f_diag, w_o_diag
    weight_hr: Tensor | None  # (P, H)


class _Stored(NamedTuple):
    """Flat per-row values the forward keeps for the backward."""

    acts: Tensor  # (N, 4H) σi, σf, tanh g, σo
    cs: Tensor  # (N, H) cell state
    tanh_cs: Tensor  # (N, H)
    ms: Tensor  # (N, H) σo tanh(c), before the projection (the outputs without one)
    hs: Tensor  # (N + 1, P) outputs, a zero last row


class LSTMFunction(torch.autograd.Function):
    """``apply(steps, last_index, cell_clip, proj_clip, x, weight_ih, bias, c0, h0,
    weight_hh, peepholes, weight_hr) -> (outputs (N + 1, P), c_final (B, H), h_final (B, P))``.

    ``x`` (N, F) is the input in the packed layout (``steps``: offset and rows per step),
    ``bias`` (4H) includes the forget bias; ``c0``, ``h0`` are the sorted initial state;
    ``peepholes`` is ``None`` or (3, H) holding ``w_i_diag``, ``w_f_diag``, ``w_o_diag``;
    ``weight_hr`` is ``None`` or (P, H).  The outputs' last row is zero (the layout's
    padding row).
    """

    @staticmethod
    def forward(
        ctx: Any,
        steps: StepRows,
        last_index: Tensor,
        cell_clip: float | None,
        proj_clip: float | None,
        x: Tensor,
        weight_ih: Tensor,
        bias: Tensor,
        c0: Tensor,
        h0: Tensor,
        weight_hh: Tensor,
        peepholes: Tensor | None,
        weight_hr: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        rec = _Recurrence(steps, cell_clip, proj_clip, weight_hh, peepholes, weight_hr)
        ext = compiled_for(x)
        if ext is None:
            acts = torch.addmm(bias, x, weight_ih.t())  # the input projection of every step
            st = _forward(rec, acts, c0, h0)
        else:  # the compiled loop adds the bias with the gates, saving a pass over acts
            st = _forward_compiled(ext, rec, torch.mm(x, weight_ih.t()), bias, c0, h0)
        ctx.rec = rec._replace(weight_hh=None, peepholes=None, weight_hr=None)  # type: ignore[arg-type]  # the tensors travel in saved_tensors
        ctx.save_for_backward(x, weight_ih, c0, h0, weight_hh, peepholes, weight_hr, *st)
        return st.hs, last_rows(st.cs, c0, last_index), last_rows(st.hs, h0, last_index)

    @staticmethod
    @first_order_only
    def backward(ctx: Any, g_hs: Tensor, g_c: Tensor, g_h: Tensor) -> tuple[Any, ...]:
        x, weight_ih, c0, h0, weight_hh, peepholes, weight_hr, *stored = ctx.saved_tensors
        rec, st = (
            ctx.rec._replace(weight_hh=weight_hh, peepholes=peepholes, weight_hr=weight_hr),
            _Stored(*stored),
        )
        ext, d_peep = compiled_for(st.acts), None
        if ext is None:
            d_gates, dc, dh, d_hs = _backward(rec, st, c0, g_hs, g_c, g_h)
        else:  # the compiled loop sums the peephole gradients too
            d_gates, dc, dh, d_hs, d_peep = ext.lstm_backward(
                st.acts,
                st.cs,
                st.tanh_cs,
                st.hs,
                c0,
                g_hs,
                g_c,
                g_h,
                rec.weight_hh,
                rec.peepholes,
                rec.weight_hr,
                rec.cell_clip,
                rec.proj_clip,
                *offsets_rows(rec.steps),
            )
        need = ctx.needs_input_grad
        d_x = d_gates @ weight_ih if need[4] else None
        d_w_ih = d_gates.t() @ x if need[5] else None
        d_bias = d_gates.sum(0) if need[6] else None
        d_w_hh = d_gates.t() @ previous_rows(st.hs, h0, rec.steps) if need[9] else None
        if not need[10]:
            d_peep = None
        elif d_peep is None:
            d_peep = _peephole_grads(d_gates, st.cs, previous_rows(st.cs, c0, rec.steps))
        d_w_hr = d_hs.t() @ st.ms if need[11] and d_hs is not None else None
        return (None, None, None, None, d_x, d_w_ih, d_bias, dc, dh, d_w_hh, d_peep, d_w_hr)


def _forward_compiled(
    ext: Any, rec: _Recurrence, acts: Tensor, bias: Tensor, c0: Tensor, h0: Tensor
) -> _Stored:
    """:func:`_forward` run by the C++ extension (the whole loop in one call); ``acts`` is
    the input projection without ``bias``, which the loop adds."""
    cs, tanh_cs, ms, hs = ext.lstm_forward(
        acts,
        bias,
        c0,
        h0,
        rec.weight_hh,
        rec.peepholes,
        rec.weight_hr,
        rec.cell_clip,
        rec.proj_clip,
        *offsets_rows(rec.steps),
    )
    return _Stored(acts, cs, tanh_cs, ms, hs)


def _forward(rec: _Recurrence, acts: Tensor, c0: Tensor, h0: Tensor) -> _Stored:
    """The recurrence.  ``acts`` holds the projected inputs and leaves holding the gate
    activations; returns everything the backward needs, all flat."""
    rows_total, hidden = acts.shape[0], c0.shape[1]
    cs, tanh_cs = acts.new_empty(rows_total, hidden), acts.new_empty(rows_total, hidden)
    hs = acts.new_empty(rows_total + 1, h0.shape[1])
    hs[-1].zero_()
    ms = acts.new_empty(rows_total, hidden) if rec.weight_hr is not None else hs
    w_hh_t = rec.weight_hh.t()
    kernels = step_kernels(acts)
    cell_forward = _cell_forward if kernels is None else kernels.lstm_cell_forward
    for t, (offset, rows) in enumerate(rec.steps):
        now = slice(offset, offset + rows)
        c_prev, h_prev = previous(cs, c0, rec.steps, t), previous(hs, h0, rec.steps, t)
        act = acts[now].addmm_(h_prev, w_hh_t)
        cell_forward(act, c_prev, cs[now], tanh_cs[now], ms[now], rec.peepholes, rec.cell_clip)
        if rec.weight_hr is not None:
            torch.mm(ms[now], rec.weight_hr.t(), out=hs[now])
            if rec.proj_clip is not None:
                hs[now].clamp_(-rec.proj_clip, rec.proj_clip)
    return _Stored(acts, cs, tanh_cs, ms if rec.weight_hr is not None else hs[:-1], hs)


def _cell_forward(
    act: Tensor,
    c_prev: Tensor,
    c: Tensor,
    tanh_c: Tensor,
    m: Tensor,
    peepholes: Tensor | None,
    clip: float | None,
) -> None:
    """One step's elementwise part: ``act`` holds the gate pre-activations and leaves
    holding (σi, σf, tanh g, σo); writes the cell state ``c``, its tanh and ``m = σo tanh(c)``."""
    hidden = c.shape[1]
    i_f, g, o = act[:, : 2 * hidden], act[:, 2 * hidden : 3 * hidden], act[:, 3 * hidden :]
    if peepholes is not None:
        i_f.view(-1, 2, hidden).addcmul_(peepholes[:2], c_prev.unsqueeze(1))
    i_f.sigmoid_()
    g.tanh_()
    torch.mul(act[:, hidden : 2 * hidden], c_prev, out=c)
    c.addcmul_(act[:, :hidden], g)
    if clip is not None:
        c.clamp_(-clip, clip)
    if peepholes is not None:
        o.addcmul_(peepholes[2], c)
    o.sigmoid_()
    torch.mul(o, torch.tanh(c, out=tanh_c), out=m)


def _backward(
    rec: _Recurrence, st: _Stored, c0: Tensor, g_hs: Tensor, g_c: Tensor, g_h: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Backward through time; returns the gradients of the gate pre-activations (N, 4H),
    of ``c0``, of ``h0`` and (with a projection) of every output, through its clip.

    ``dc``/``dh`` carry the gradient of the state of every sorted sequence; a sequence's
    rows are untouched until the loop reaches its last step, so they start as the gradient
    of the final state.
    """
    d_gates = torch.empty_like(st.acts)
    dc, dh = g_c.clone(), g_h.clone()
    d_hs = st.hs.new_empty(st.hs.shape[0] - 1, dh.shape[1]) if rec.weight_hr is not None else None
    c_mask = st.cs.abs() < rec.cell_clip if rec.cell_clip is not None else None
    h_mask = st.hs[:-1].abs() < rec.proj_clip if rec.proj_clip is not None else None
    kernels = step_kernels(st.acts)
    cell_backward = _cell_backward if kernels is None else kernels.lstm_cell_backward
    for t in range(len(rec.steps) - 1, -1, -1):
        offset, rows = rec.steps[t]
        now = slice(offset, offset + rows)
        dh_t = dh[:rows].add_(g_hs[now])
        if h_mask is not None:
            dh_t.mul_(h_mask[now])
        if d_hs is not None and rec.weight_hr is not None:  # both or neither
            d_hs[now] = dh_t
            dh_t = dh_t @ rec.weight_hr
        cell_backward(
            dh_t,
            dc[:rows],
            st.tanh_cs[now],
            previous(st.cs, c0, rec.steps, t),
            st.acts[now],
            d_gates[now],
            rec.peepholes,
            None if c_mask is None else c_mask[now],
        )
        torch.mm(d_gates[now], rec.weight_hh, out=dh[:rows])
    return d_gates, dc, dh, d_hs


def _cell_backward(
    dm: Tensor,
    dc: Tensor,
    tanh_c: Tensor,
    c_prev: Tensor,
    act: Tensor,
    d_gates: Tensor,
    peepholes: Tensor | None,
    c_mask: Tensor | None,
) -> None:
    """One step back: ``dm`` is the gradient of ``m = σo tanh(c)``; ``dc`` holds the
    gradient of ``c`` from later steps and leaves holding that of ``c_prev``; writes the
    gradients of the gate pre-activations into ``d_gates``."""
    hidden = c_prev.shape[1]
    a_i, a_f, a_g, a_o = act.split(hidden, 1)
    d_i, d_f, d_g, d_o = d_gates.split(hidden, 1)
    u = dm * a_o
    v = u * tanh_c
    torch.addcmul(v, v, a_o, value=-1, out=d_o)  # dm tanh(c) σo (1 - σo)
    dc.add_(u).addcmul_(v, tanh_c, value=-1)  # + dm σo (1 - tanh²c)
    if peepholes is not None:
        dc.addcmul_(d_o, peepholes[2])
    if c_mask is not None:
        dc.mul_(c_mask)
    torch.mul(dc, a_g, out=d_i)
    torch.mul(dc, c_prev, out=d_f)
    i_f = act[:, : 2 * hidden]
    d_gates[:, : 2 * hidden].mul_(torch.addcmul(i_f, i_f, i_f, value=-1))
    torch.mul(dc, a_i, out=d_g)
    d_g.addcmul_(d_g, a_g * a_g, value=-1)
    dc.mul_(a_f)
    if peepholes is not None:
        dc.addcmul_(d_i, peepholes[0]).addcmul_(d_f, peepholes[1])


def _peephole_grads(d_gates: Tensor, cs: Tensor, c_prev: Tensor) -> Tensor:
    """Gradients of ``w_i_diag``, ``w_f_diag`` (read ``c_prev``) and ``w_o_diag`` (reads ``c``)."""
    hidden = cs.shape[1]
    d_i, d_f, _, d_o = d_gates.split(hidden, 1)
    return torch.stack([(d_i * c_prev).sum(0), (d_f * c_prev).sum(0), (d_o * cs).sum(0)])
