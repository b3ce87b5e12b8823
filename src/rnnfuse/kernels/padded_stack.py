"""A whole LSTM stack over a small ragged inference batch, each layer in fused calls over
the padding, with nothing between the calls but what they need.

Where every layer of a stack takes the ``fused-padded`` path
(:func:`rnnfuse.kernels.ragged.ragged_cpu_path`: LSTM layers, no gradient, at most 16
sequences with more than one thread, 8 with one), the stack's forward is one call here
instead of a :func:`rnnfuse.kernels.run_layer` per layer (:func:`rnnfuse.kernels.run_stack`
asks :func:`rnnfuse.kernels.dispatch.choose_stack_path`): the lengths are planned and the
weights with the indicator column (:mod:`rnnfuse.kernels.padded`) made once per call, and the
layers chain time-major (each output, zero past every length, is the next input as it is).
The C++ extension runs the layers' glue (indicator column, fused calls, final ``h``) in one
call; without it the same operations run in Python.

With few rows a step's cost still grows with them (a 256-unit LSTM step took about
``20 + 10 r`` µs for ``r`` rows, two threads, AMD EPYC), so where only a few sequences run on
past the others the layer's time is cut there (:func:`cut_points`): one call runs every
sequence up to the cut, the next only those still running (their state carried over),
while each call costs about 1 ms of its own, so a cut is made only where the model says it
saves more (for narrower layers, whose rows cost less, a call's cost weighs more:
:data:`ROW_WORK`).  Every sequence ending inside a call is held by the indicator, so its final
``c`` is that call's.  With one call per layer the results are the layer-by-layer path's
bit for bit (the same operations on the same values); with cuts, to rounding (a call over
fewer rows sums in another order).

Measured (``benchmarks/run.py``, 2-layer LSTM of 256, T = 100, lengths uniform in 1..T,
batch 8, AMD EPYC): layer by layer the glue between and around the two calls cost about
2.4 ms per forward, 11 % of ``nn.LSTM``'s forward; in one call about 3-5 %; with the cut
(two sequences run on from step 70 of 99) the forward is 0.96-1.01 of ``nn.LSTM``'s.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import _VF, Tensor

from ..cells.spec import KernelSpec
from ..state import LSTMState
from . import _ext
from .fused import needs_grad
from .padded import _indicator_weights, _plan, held_exactly

__all__ = [
    "run_padded_stack",
    "cut_points",
    "STEP_COST",
    "CALL_COST",
    "MAX_CALLS",
    "ROW_WORK",
]


STEP_COST = 2.0
"""A step's cost in a fused call beyond its rows, in rows: with few rows a step of a 256-unit
LSTM took about ``20 + 10 r`` µs for ``r`` rows (oneDNN, two threads, AMD EPYC)."""

CALL_COST = 100.0
"""A fused call's own cost in row-steps (``STEP_COST``'s unit), whatever it runs: about 1 ms
on the same machine (preparing the weights and the kernel)."""

MAX_CALLS = 4
"""At most this many fused calls per layer."""

ROW_WORK = 460_000
"""The multiply-adds per row and step of the layers the costs were measured on (the mean of a
2-layer LSTM of 256 on 128 inputs).  A row of a narrower layer costs less, a step and a call
about the same: for a stack whose rows do ``w`` multiply-adds, ``STEP_COST`` and
``CALL_COST`` scale by ``ROW_WORK / w`` (measured: for layers of 32 units a cut made the
forward 20 % slower unscaled; of 256 units it made it 4-15 % faster)."""


def cut_points(
    lengths: Sequence[int], steps: int, call_cost: float = CALL_COST, step_cost: float = STEP_COST
) -> list[int]:
    """Where to cut the ``steps`` of a padded call: bounds ``0 = b_0 < ... < b_m = steps``
    (``m ≤ MAX_CALLS``, inner bounds at lengths) minimising the modelled cost
    ``Σ_k (b_{k+1} - b_k) (step_cost + rows_k) + m · call_cost``, where the first call runs
    every sequence and a later one those longer than its start (the others have ended:
    their padding need not run).

    >>> cut_points([57, 99, 4, 70, 65, 57, 81, 36], 99)  # two run on past 70
    [0, 70, 99]
    >>> cut_points([99, 95, 90, 88, 80, 99, 97, 92], 99)  # a cut would save less than a call
    [0, 99]
    """
    points = sorted({0, steps, *(n for n in lengths if 0 < n < steps)})
    rows = [len(lengths)] + [sum(n > t for n in lengths) for t in points[1:]]
    # best[m][j]: the least cost of steps [0, points[j]) in m calls
    best = [[math.inf] * len(points) for _ in range(MAX_CALLS + 1)]
    before = [[0] * len(points) for _ in range(MAX_CALLS + 1)]
    best[0][0] = 0.0
    for m in range(1, MAX_CALLS + 1):
        for j in range(1, len(points)):
            for i in range(j):
                if best[m - 1][i] == math.inf or rows[i] == 0:  # nothing runs from there
                    continue
                cost = best[m - 1][i] + (points[j] - points[i]) * (step_cost + rows[i]) + call_cost
                if cost < best[m][j]:
                    best[m][j], before[m][j] = cost, i
    last = len(points) - 1
    calls = min(range(1, MAX_CALLS + 1), key=lambda m: best[m][last])
    bounds, j = [steps], last
    for m in range(calls, 0, -1):
        j = before[m][j]
        bounds.append(points[j])
    return bounds[::-1]


@functools.lru_cache(maxsize=32)
def _segments(
    values: tuple[int, ...], steps: int, device: torch.device, call_cost: float, step_cost: float
) -> tuple[tuple[int, ...], tuple[Tensor, ...], tuple[Tensor, ...]]:
    """The calls' starts (:func:`cut_points`; the last bound is ``steps``), and for every
    call but the first the rows it runs (the sequences longer than its start) and where
    they are among the rows of the call before (kept: tuples, never changed)."""
    bounds = cut_points(values, steps, call_cost, step_cost)
    rows, carry, previous = [], [], list(range(len(values)))
    with torch.inference_mode(False):  # kept for later calls, which autograd may record
        for start in bounds[1:-1]:
            alive = [b for b in previous if values[b] > start]
            rows.append(torch.tensor(alive, dtype=torch.int64, device=device))
            carry.append(
                torch.tensor([previous.index(b) for b in alive], dtype=torch.int64, device=device)
            )
            previous = alive
    return tuple(bounds[:-1]), tuple(rows), tuple(carry)


def run_padded_stack(
    specs: Sequence[KernelSpec], x: Tensor, lengths: Tensor, states: Sequence[LSTMState] | None
) -> tuple[Tensor, list[LSTMState]] | None:
    """Every layer (``specs`` from :func:`rnnfuse.kernels.dispatch.padded_stack_specs`) over
    batch-first ``x`` with
    ``lengths``, from ``states`` (one per layer; ``None``: zeros).  Returns the top layer's
    outputs (B, T, H), zero past each length, and each layer's final state; ``None`` when
    no step runs (every length zero) or a final state is not finite (a NaN or inf came in:
    :func:`rnnfuse.kernels.padded.held_exactly`): the layer-by-layer path handles those."""
    if states is not None and needs_grad(x, tuple(states), ()):
        return None  # autograd records the calls: the layer-by-layer path
    plan = _plan(
        lengths, x.shape[1], x.device, untrimmed=0
    )  # only the top layer's outputs are padded
    if plan.steps == 0:
        return None
    weights = [
        list(_indicator_weights(s.fused_weights or (), reuse=True)) for s in specs
    ]  # no autograd here
    scale = ROW_WORK * len(weights) / sum(w[0].numel() + w[1].numel() for w in weights)
    starts, rows, carry = _segments(
        plan.values, plan.steps, x.device, CALL_COST * scale, STEP_COST * scale
    )
    h0, c0 = ([], []) if states is None else ([s.h for s in states], [s.c for s in states])
    ext = _ext.extension()
    run = _run_python if ext is None else ext.padded_lstm_stack
    out, cells, last = run(
        x,
        plan.outside,
        plan.padded_rows,
        plan.last_rows,
        plan.empty,
        starts,
        rows,
        carry,
        weights,
        h0,
        c0,
    )
    if not held_exactly(*last, *cells):
        return None  # a NaN or inf came in: layer by layer (rnnfuse.kernels.padded.held_exactly)
    return out, [LSTMState(c, h) for c, h in zip(cells, last, strict=True)]


def _run_python(
    x: Tensor,
    outside: Tensor,
    padded_rows: Tensor,
    last_rows: Tensor,
    empty: Tensor | None,
    starts: Sequence[int],
    rows: Sequence[Tensor],
    carry: Sequence[Tensor],
    weights: list[list[Tensor]],
    h0: list[Tensor],
    c0: list[Tensor],
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The layers' glue in Python: what the extension's ``padded_lstm_stack`` does (empty
    ``h0`` and ``c0``: zero initial states).  Each layer makes a fused call per start in
    ``starts``; the first runs every sequence, call ``k ≥ 1`` the ``rows[k - 1]`` (its
    state: the rows ``carry[k - 1]`` of the call before)."""
    steps, batch = outside.shape[0], x.shape[0]
    if not h0:
        h0 = c0 = [x.new_zeros(batch, w[1].shape[1]) for w in weights]
    indicator = outside.to(x.dtype)
    layer_in = x[:, :steps].transpose(0, 1)
    cells, last = [], []
    for k, w in enumerate(weights):
        inputs = torch.cat([layer_in, indicator], 2)
        if k == 0:  # whatever the caller's padding holds must not reach a product
            inputs.view(steps * batch, -1)[:, :-1].index_fill_(0, padded_rows, 0.0)
        out, c = _layer_calls(inputs, w, h0[k], c0[k], starts, rows, carry)
        h = out.view(steps * batch, -1).index_select(0, last_rows)
        last.append(h if empty is None else torch.where(empty, h0[k], h))
        cells.append(c)
        layer_in = out
    if steps < x.shape[1]:
        layer_in = torch.constant_pad_nd(layer_in, (0, 0, 0, 0, 0, x.shape[1] - steps))
    return layer_in.transpose(0, 1), cells, last


def _layer_calls(
    inputs: Tensor,
    w: list[Tensor],
    h0: Tensor,
    c0: Tensor,
    starts: Sequence[int],
    rows: Sequence[Tensor],
    carry: Sequence[Tensor],
) -> tuple[Tensor, Tensor]:
    """One layer's fused calls: its time-major outputs (zero where a call does not run a
    sequence: it has ended) and every sequence's final ``c`` (held past its length, so the
    one of the call it ends in)."""
    stops = [*starts[1:], inputs.shape[0]]
    out, h, c = _VF.lstm(
        inputs[: stops[0]], (h0.unsqueeze(0), c0.unsqueeze(0)), w, True, 1, 0.0, False, False, False
    )
    if len(starts) == 1:
        return out, c[0]
    outs, cells = [out], c[0]
    for start, stop, alive, where in zip(starts[1:], stops[1:], rows, carry, strict=True):
        state = (h.index_select(1, where), c.index_select(1, where))
        part, h, c = _VF.lstm(
            inputs[start:stop].index_select(1, alive), state, w, True, 1, 0.0, False, False, False
        )
        outs.append(
            part.new_zeros(stop - start, inputs.shape[1], part.shape[2]).index_copy_(1, alive, part)
        )
        cells = cells.index_copy(0, alive, c[0])
    return torch.cat(outs), cells
