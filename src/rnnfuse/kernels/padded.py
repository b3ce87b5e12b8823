"""A ragged batch in one fused call over the padded batch, exact final states included.

Where a batch is small, a step costs about the same whatever its number of rows (reading
the recurrent weights dominates), so running the padding costs little, and one call of
PyTorch's fused kernel (oneDNN on CPU), which spreads each step over the threads, can beat a
loop that skips the padding (:func:`rnnfuse.kernels.ragged.ragged_cpu_path` says where it is
chosen).  Three things make the padded call exact:

* Past its length a sequence's input is zero and an *indicator* feature is one: the call's
  input has one more column, and the input weights one more column ``v`` that is zero for
  the real steps' product (``0 · v``) and saturates the gates on padded steps.  For an LSTM
  ``v`` drives the input gate to 0 and the forget gate to 1 exactly (``σ(±M) = 0, 1`` in
  floating point), so ``c`` is *held*: the kernel's final ``c`` is each sequence's ``c``
  at its last step.  The output gate goes to 0, so the padded steps' ``h`` is 0.  That holds
  while the rest of a gate's sum stays far below ``M`` (:data:`SATURATE`); since
  ``|h| ≤ 1``, :func:`padded_runs` checks ``max_rows Σ|W_hh| + |b|`` against it.  A GRU or
  tanh RNN needs no indicator: its state stays bounded over the padding and nothing after
  a sequence's end is read.  (A ReLU RNN's state is unbounded: it is not run this way.)
* The final ``h`` (an LSTM's) or state (GRU, RNN) is read from the outputs at each
  sequence's last step (the initial state for an empty one).
* The outputs are zero past each length: an LSTM's ``h = o · tanh(c)`` is exactly 0 there
  while ``c`` is finite; a GRU's or RNN's are set to zero (selected, not multiplied by a
  mask: ``0 · NaN`` is NaN).

All of this holds while the values stay finite.  A NaN or an infinity at a valid step (or in
the initial state) flows on as in ``nn.LSTM``, but in the padding it would break the hold:
a NaN ``h`` at a sequence's last step reaches the held gates through ``W_hh`` (its final
``c`` would become NaN where ``nn.LSTM``'s is finite) and a NaN ``c`` makes the padding's
``h`` NaN.  So an LSTM call whose final ``h`` or ``c`` is not finite everywhere
(:func:`held_exactly`, two small checks) is run again on the BPTT kernel, which runs no
step past a length.

Gradients are exact as well: nothing is read from a padded step but the held ``c``, and at
a saturated gate the derivative is exactly zero (``σ'(±M) = 0``), so the padded steps pass
``∂L/∂c`` through unchanged and contribute nothing else.  The backward direction reads each
sequence reversed within its length (one gather in, the same gather out).

Nothing derived from the weights is kept between calls: the bound and the input weights
with the indicator column are made on every call (a copy of ``W_ih`` into a buffer kept per
weight, and one reduction over ``W_hh``, small beside the steps), so a write that no version
counter sees (through ``.data``, from NumPy) is never missed.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from ..cells.base import RecurrentCell
from ..cells.constants import tracing
from ..cells.spec import KernelSpec
from ..state import LSTMState, state_output
from .bptt import run_bptt
from .fused import fused_call, fused_spec, needs_grad
from .loop import reverse_within_lengths, run_loop

__all__ = ["run_fused_padded", "padded_runs", "held_exactly", "SATURATE"]

SATURATE = 1.0e4
"""The indicator weight's magnitude ``M``.  ``σ(x)`` is exactly 0 or 1 in float32 and float64
once ``|x| > 745`` (``exp(-745)`` underflows in float64), so a gate is saturated exactly
while the rest of its sum stays below ``M - 1000``."""

_MARGIN = 1000.0
_UNTRIMMED = 2
"""Past the longest length, up to this many steps of a layer run (their outputs are zero
anyway) rather than trimmed and padded again: a copy of the outputs costs about what a step
costs.  (A stack in one call pads its top layer's outputs only: it always trims.)"""

_HOLD_SIGNS = (-1.0, 1.0, 0.0, -1.0)  # the LSTM's gate blocks i, f, g, o


def padded_runs(spec: KernelSpec) -> bool:
    """Whether :func:`run_fused_padded` computes ``spec``'s layer exactly: a GRU, a tanh RNN,
    or an LSTM without projection whose recurrent sums cannot reach the indicator's
    (``max_rows Σ_j |W_hh[r, j]| + |b_ih[r] + b_hh[r]| < SATURATE - 1000``, as ``|h| ≤ 1``).
    Read from the weights on every call (see the module docstring)."""
    weights = spec.fused_weights
    if weights is None or spec.mode not in ("lstm", "gru", "rnn_tanh"):
        return False
    if spec.mode != "lstm":
        return True
    if len(weights) != 4:
        return False
    return _holds(*weights[1:4])


def _holds(w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> bool:
    """The bound of :func:`padded_runs`: first the cheap ``H · max|W_hh| + max|b_ih + b_hh|``
    (one ``aminmax`` pass over ``W_hh``), the row sums only where that is not enough; false
    for NaN or infinite weights."""
    limit = SATURATE - _MARGIN
    with torch.no_grad():
        bias = b_ih + b_hh
        low, high, b_low, b_high = torch.stack(
            [*torch.aminmax(w_hh), *torch.aminmax(bias)]
        ).tolist()
        if max(high, -low) * w_hh.shape[1] + max(b_high, -b_low) < limit:  # False for NaN
            return True
        bound = (w_hh.abs().sum(1) + bias.abs()).max()
    return bool(bound < limit)


@functools.lru_cache(maxsize=32)
def _indicator_column(rows: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The indicator's input weights ``(4H, 1)``: ``-M, +M, 0, -M`` on the gate blocks
    i, f, g, o (a constant: it depends on no weight)."""
    with torch.inference_mode(False), torch.no_grad():  # serves calls that autograd records too
        signs = torch.tensor(_HOLD_SIGNS, dtype=dtype, device=device) * SATURATE
        return signs.repeat_interleave(rows // len(_HOLD_SIGNS)).unsqueeze(1)


def _indicator_weights(weights: tuple[Tensor, ...], *, reuse: bool = False) -> tuple[Tensor, ...]:
    """An LSTM's ``weights`` with the indicator's column appended to ``w_ih``, made from the
    weights as they are now: a new tensor (differentiable in ``w_ih``), or with ``reuse``
    (for a call that autograd does not record) the same memory as the last call in this
    thread, into which ``w_ih`` is copied again (a fresh allocation every call cost 2-5 % of a
    small batch's forward)."""
    w_ih = weights[0]
    column = _indicator_column(w_ih.shape[0], w_ih.dtype, w_ih.device)
    if not reuse:
        return (torch.cat([w_ih, column], 1), *weights[1:])
    return (_refilled(w_ih, column), *weights[1:])


_BUFFERS = threading.local()  # per thread: {w_ih: (4H, F + 1) buffer}, weakly keyed


def _refilled(w_ih: Tensor, column: Tensor) -> Tensor:
    """``[w_ih | column]`` in this thread's buffer for ``w_ih``: its memory kept while the
    weight lives, its values copied from ``w_ih`` on every call (so no write is missed)."""
    kept = getattr(_BUFFERS, "by_weight", None)
    if kept is None:
        kept = _BUFFERS.by_weight = WeakIdKeyDictionary()
    shape = (w_ih.shape[0], w_ih.shape[1] + 1)
    buffer = kept.get(w_ih)
    if (
        buffer is None
        or buffer.shape != shape
        or buffer.dtype != w_ih.dtype
        or buffer.device != w_ih.device
    ):
        with torch.inference_mode(False), torch.no_grad():  # usable in and out of inference_mode
            buffer = torch.empty(shape, dtype=w_ih.dtype, device=w_ih.device)
            buffer[:, -1:].copy_(column)
        kept[w_ih] = buffer
    with torch.no_grad():
        buffer[:, :-1].copy_(w_ih)
    return buffer


class _Plan(NamedTuple):
    """What a padded call derives from the lengths alone (time-major flat rows ``t·B + b``)."""

    steps: int  # the steps the kernel runs: the longest length, or all when that is close
    inside: Tensor  # (steps, B) bool
    outside: Tensor  # (steps, B, 1) bool: the indicator
    padded_rows: Tensor  # flat rows past a length
    last_rows: Tensor  # (B,) each sequence's last step (step 0 for an empty one)
    empty: Tensor | None  # (B, 1) bool where a sequence is empty, None if none is
    values: tuple[int, ...]  # the lengths


def _plan(lengths: Tensor, total: int, device: torch.device, untrimmed: int = _UNTRIMMED) -> _Plan:
    """:func:`_make_plan`, kept for the last few length patterns (by value: a batch small
    enough for this path has few lengths, read in one small copy; every layer of a stack
    and every batch with the same lengths shares the plan)."""
    values = tuple(lengths.tolist())
    if tracing():
        return _make_plan(values, total, device, untrimmed)
    return _kept_plan(values, total, device, untrimmed)


@functools.lru_cache(maxsize=32)
def _kept_plan(values: tuple[int, ...], total: int, device: torch.device, untrimmed: int) -> _Plan:
    with torch.inference_mode(False):  # a kept plan may serve a later call that autograd records
        return _make_plan(values, total, device, untrimmed)


def _make_plan(values: tuple[int, ...], total: int, device: torch.device, untrimmed: int) -> _Plan:
    """The plan from the lengths' ``values``, in a handful of tensor operations: it runs
    to the longest length, or to ``total`` when that is at most ``untrimmed`` steps more."""
    batch, longest = len(values), max(values, default=0)
    steps = longest if total - longest > untrimmed or longest == 0 else total
    lengths = torch.tensor(values, dtype=torch.int64, device=device)
    inside = torch.arange(steps, device=device).unsqueeze(1) < lengths.unsqueeze(0)
    outside = ~inside
    last = torch.tensor([max(n - 1, 0) * batch + b for b, n in enumerate(values)], device=device)
    empty = torch.tensor([[n == 0] for n in values], device=device) if 0 in values else None
    return _Plan(
        steps,
        inside,
        outside.unsqueeze(2),
        outside.flatten().nonzero().squeeze(1),
        last,
        empty,
        values,
    )


def run_fused_padded(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor,
    state: Any,
    reverse: bool,
    *,
    spec: KernelSpec | None = None,
    checked: bool = False,
) -> tuple[Tensor, Any]:
    """One fused call over the padded batch ``x`` (B, T, F) with ``lengths`` (B,); see the
    module docstring.  Returns ``(outputs, final_state)`` as :func:`rnnfuse.kernels.run_layer`.
    ``checked``: the caller has just found :func:`padded_runs` true for ``spec``."""
    spec = fused_spec(cell, x, spec)
    assert spec.fused_weights is not None  # fused_spec checked
    if not checked and not padded_runs(spec):
        raise ValueError(
            f"cell: run_fused_padded runs a GRU, a tanh RNN or an LSTM without projection "
            f"whose recurrent sums stay below {SATURATE - _MARGIN:g}; got {cell!r} ({spec.mode})"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:  # the kernels refuse empty batches
        return run_loop(cell, x, lengths, state, reverse)
    total = x.shape[1]
    plan = _plan(lengths, total, x.device)
    if plan.steps == 0:
        return run_loop(cell, x, lengths, state, reverse)
    steps = plan.steps
    given = x
    if reverse:
        x = reverse_within_lengths(x, lengths)
    hold = spec.mode == "lstm"
    x_tm = _padded_input(x[:, :steps].transpose(0, 1), plan, hold)
    if hold:
        weights = _indicator_weights(
            spec.fused_weights, reuse=not needs_grad(x, state, spec.fused_weights)
        )
    else:
        weights = spec.fused_weights
    out, final = fused_call(spec._replace(fused_weights=weights), x_tm, state)
    if not hold:  # the state past a length is not read, its outputs are set to zero
        out = _zero_padding(out, plan)
    last = out.view(-1, out.shape[2]).index_select(0, plan.last_rows)
    if plan.empty is not None:
        last = torch.where(plan.empty, state_output(state), last)
    if hold and not held_exactly(last, final.c):  # a NaN or inf came in: the exact loop (see above)
        return run_bptt(cell, given, lengths, state, reverse, spec=spec)
    if steps < total:
        out = torch.constant_pad_nd(out, (0, 0, 0, 0, 0, total - steps))
    out = out.transpose(0, 1)  # (B, T, H), a view
    if reverse:
        out = reverse_within_lengths(out, lengths)
    return out, (LSTMState(final.c, last) if hold else last)


def held_exactly(*finals: Tensor) -> bool:
    """Whether a padded LSTM call held every sequence exactly (see the module docstring):
    the final states ``finals`` (each ``h``, the initial one for an empty sequence, and each
    ``c``) all finite.  Read from one sum (a sum that overflows only costs a rerun)."""
    total = sum(t.detach().sum() for t in finals)
    return math.isfinite(float(total))


def _zero_padding(out: Tensor, plan: _Plan) -> Tensor:
    """The kernel's time-major outputs ``out`` (steps, B, H) set to zero past each length
    (in place unless autograd records them: the kernel's backward may read them)."""
    flat = out.view(-1, out.shape[2])
    if out.requires_grad:
        return flat.index_fill(0, plan.padded_rows, 0.0).view_as(out)
    flat.index_fill_(0, plan.padded_rows, 0.0)
    return out


def _padded_input(x_tm: Tensor, plan: _Plan, indicator: bool) -> Tensor:
    """The kernel's time-major input: ``x_tm`` (steps, B, F) with zeros past each length
    (whatever the caller's padding holds: even a NaN there must not reach a product), and
    the indicator column (1 past each length) when ``indicator``."""
    steps, batch, features = x_tm.shape
    if not indicator:
        out = x_tm.clone(memory_format=torch.contiguous_format)
    else:
        out = torch.cat(
            [x_tm, plan.outside.to(x_tm.dtype)], 2
        )  # a fresh tensor, so the padding is cleared in place
    out.view(steps * batch, -1)[:, :features].index_fill_(0, plan.padded_rows, 0.0)
    return out
