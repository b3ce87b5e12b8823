"""A ragged batch in one fused call over the padded batch, exact final states included.

Where a batch is small, a step costs about the same whatever its number of rows (reading
the recurrent weights dominates), so running the padding costs little and one call of
PyTorch's fused kernel (oneDNN on CPU) beats any loop that skips it.  Three things make the
padded call exact:

* Past its length a sequence's input is zero and an *indicator* feature is one: the call's
  input has one more column, and the input weights one more column ``v`` that is zero for
  the real steps' product (``0 · v``) and saturates the gates on padded steps.  For an LSTM
  ``v`` drives the input gate to 0 and the forget gate to 1 exactly (``σ(±M) = 0, 1`` in
  floating point), so ``c`` is *held*: the kernel's final ``c`` is each sequence's ``c``
  at its last step.  The output gate goes to 0, so the padded steps' ``h`` is 0.  That
  holds while the rest of a gate's sum stays far below ``M`` (:data:`SATURATE`); since
  ``|h| ≤ 1``, :func:`padded_runs` checks ``max_rows Σ|W_hh| + |b|`` against it.  A GRU or
  tanh RNN needs no indicator: its state stays bounded over the padding and nothing after
  a sequence's end is read.  (A ReLU RNN's state is unbounded: it is not run this way.)
* The final ``h`` (an LSTM's) or state (GRU, RNN) is read from the outputs at each
  sequence's last step (the initial state for an empty one).
* The outputs are zero past each length.

Gradients are exact as well: nothing is read from a padded step but the held ``c``, and at
a saturated gate the derivative is exactly zero (``σ'(±M) = 0``), so the padded steps pass
``∂L/∂c`` through unchanged and contribute nothing else.  The backward direction reads each
sequence reversed within its length (one gather in, the same gather out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from ..cells.base import RecurrentCell
from ..cells.constants import tracing
from ..cells.spec import KernelSpec
from ..state import LSTMState, state_output
from .fused import fused_call, fused_spec
from .loop import run_loop

__all__ = ["run_fused_padded", "padded_runs", "SATURATE"]

SATURATE = 1.0e4
"""The indicator weight's magnitude ``M``.  ``σ(x)`` is exactly 0 or 1 in float32 and float64
once ``|x| > 745`` (``exp(-745)`` underflows in float64), so a gate is saturated exactly
while the rest of its sum stays below ``M - 1000``."""

_MARGIN = 1000.0
_HOLD_SIGNS = (-1.0, 1.0, 0.0, -1.0)  # the LSTM's gate blocks i, f, g, o

_V = TypeVar("_V")
_DERIVED: WeakIdKeyDictionary = WeakIdKeyDictionary()


def _derived(name: str, deps: tuple[Tensor, ...], make: Callable[[], _V]) -> _V:
    """``make()``, a value that depends on the tensors ``deps`` only, kept with ``deps[0]``
    while every one of them is the same, unmodified tensor (identity, storage and version
    counter), so that inference calls do not recompute it from unchanged weights.  Never
    kept while tracing or for inference tensors (they have no version counter)."""
    if tracing() or any(t.is_inference() or type(t) not in (Tensor, torch.nn.Parameter) for t in deps):
        return make()
    signature = tuple((id(t), t.data_ptr(), t._version) for t in deps)
    kept = _DERIVED.setdefault(deps[0], {})
    found = kept.get(name)
    if found is not None and found[0] == signature:
        return found[1]
    value = make()
    kept[name] = (signature, value)
    return value


def padded_runs(spec: KernelSpec) -> bool:
    """Whether :func:`run_fused_padded` computes ``spec``'s layer exactly: a GRU, a tanh RNN,
    or an LSTM without projection whose recurrent sums cannot reach the indicator's
    (``max_rows Σ_j |W_hh[r, j]| + |b_ih[r] + b_hh[r]| < SATURATE - 1000``, as ``|h| ≤ 1``)."""
    weights = spec.fused_weights
    if weights is None or spec.mode not in ("lstm", "gru", "rnn_tanh"):
        return False
    if spec.mode != "lstm":
        return True
    if len(weights) != 4:
        return False
    return _derived("holds", weights[1:4], lambda: _holds(*weights[1:4]))


def _holds(w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> bool:
    with torch.no_grad():
        bound = (w_hh.abs().sum(1) + (b_ih + b_hh).abs()).max()
    return bool(bound < SATURATE - _MARGIN)


def _indicator_weights(weights: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """An LSTM's ``weights`` with the indicator's column appended to ``w_ih`` (kept for
    calls that need no gradient of ``w_ih``)."""
    w_ih = weights[0]

    def make() -> Tensor:
        signs = w_ih.new_tensor(_HOLD_SIGNS) * SATURATE
        column = signs.repeat_interleave(w_ih.shape[0] // signs.numel())
        return torch.cat([w_ih, column.unsqueeze(1)], 1)

    if torch.is_grad_enabled() and w_ih.requires_grad:
        return (make(), *weights[1:])
    with torch.no_grad():
        return (_derived("w_ih", (w_ih,), make), *weights[1:])


def _within(lengths: Tensor, steps: int) -> Tensor:
    """For each sequence and step ``t < steps``, the step read when running it reversed
    within its length (``n - 1 - t`` inside, ``t`` past it): (B, steps), an involution."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)
    n = lengths.unsqueeze(1)
    return torch.where(t < n, n - 1 - t, t)


def _time_gather(x: Tensor, index: Tensor) -> Tensor:
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.shape[2]))


def run_fused_padded(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor,
    state: Any,
    reverse: bool,
    *,
    spec: KernelSpec | None = None,
) -> tuple[Tensor, Any]:
    """One fused call over the padded batch ``x`` (B, T, F) with ``lengths`` (B,); see the
    module docstring.  Returns ``(outputs, final_state)`` as :func:`rnnfuse.kernels.run_layer`."""
    spec = fused_spec(cell, x, spec)
    assert spec.fused_weights is not None  # fused_spec checked
    if not padded_runs(spec):
        raise ValueError(f"cell: run_fused_padded runs a GRU, a tanh RNN or an LSTM without projection "
                         f"whose recurrent sums stay below {SATURATE - _MARGIN:g}; got {cell!r} ({spec.mode})")
    if x.shape[0] == 0 or x.shape[1] == 0 or int(lengths.max()) == 0:  # the kernels refuse empty batches
        return run_loop(cell, x, lengths, state, reverse)
    lengths = lengths.to(x.device)
    total, steps = x.shape[1], int(lengths.max())
    x = x[:, :steps]
    index = _within(lengths, steps) if reverse else None
    if index is not None:
        x = _time_gather(x, index)
    inside = torch.arange(steps, device=x.device).unsqueeze(1) < lengths.unsqueeze(0)  # (steps, B)
    hold = spec.mode == "lstm"
    x_tm = _padded_input(x.transpose(0, 1), inside, hold)
    weights = _indicator_weights(spec.fused_weights) if hold else spec.fused_weights
    out, final = fused_call(spec._replace(fused_weights=weights), x_tm, state)
    if not hold:  # a held LSTM's h is zero past each length already
        out = out * inside.unsqueeze(2)
    out = out.transpose(0, 1)  # (B, steps, H)
    last = _last_outputs(out, lengths, state_output(state))
    if index is not None:
        out = _time_gather(out, index)
    if steps < total:
        out = torch.nn.functional.pad(out, (0, 0, 0, total - steps))
    return out, (LSTMState(final.c, last) if spec.mode == "lstm" else last)


def _padded_input(x_tm: Tensor, inside: Tensor, indicator: bool) -> Tensor:
    """The kernel's time-major input: ``x_tm`` (steps, B, F) with zeros past each length
    (whatever the caller's padding holds: even a NaN there must not reach a product), and
    the indicator column (1 past each length) when ``indicator``."""
    steps, batch, features = x_tm.shape
    parts = [x_tm, (~inside).to(x_tm.dtype).unsqueeze(2)] if indicator else [x_tm]
    out = torch.cat(parts, 2)  # a fresh tensor, so the padding is cleared in place
    padded = (~inside).flatten().nonzero().squeeze(1)
    out.view(steps * batch, -1)[:, :features].index_fill_(0, padded, 0.0)
    return out


def _last_outputs(out: Tensor, lengths: Tensor, initial: Tensor) -> Tensor:
    """Each sequence's output at its last step, ``initial`` where it is empty."""
    last = out[torch.arange(out.shape[0], device=out.device), (lengths - 1).clamp(min=0)]
    if bool((lengths > 0).all()):
        return last
    return torch.where((lengths > 0).unsqueeze(1), last, initial)
