"""Ragged batches on PyTorch's fused kernels, exactly, at a cost that follows the tokens.

On CPU a packed sequence leaves the oneDNN kernel (PyTorch's packed 2-layer LSTM runs
forward+backward 2.3x slower than the padded batch, see benchmarks/results/), so
:func:`run_fused_segments` sorts the batch (internally), cuts time
into a few segments at actual lengths (:func:`rnnfuse.kernels.layout.segment_bounds`) and
makes one fused call per segment over the shrinking prefix of sequences still alive,
carrying the state from one segment to the next.  Outputs are read back only inside each
length (zero past it); the final ``h`` of each sequence is its output at its last step.

An LSTM's final ``c`` is not an output.  Sequences that end exactly at a segment boundary
take it from the kernel; for those that end inside a segment it is recomputed from the
segment's inputs and outputs: the gates of every step follow from ``x_t`` and ``h_{t-1}``
(both known) in one batched product, and ``c_t = σ(f_t) c_{t-1} + σ(i_t) tanh(g_t)`` is then
a cheap elementwise recurrence.  The result is the same function of the parameters, so its
gradients are exact too.  With lengths uniform in 1..100 (B = 64, 2 threads) a 2-layer
LSTM's forward+backward costs 0.69x the full batch (the tokens are 0.51x; smaller
batches use the matrix units less well).

:func:`run_fused_packed` makes one call on the packed layout: the right choice where the
kernel handles it natively (cuDNN).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..cells.base import RecurrentCell
from ..cells.lstm import lstm_cell_terms
from ..cells.spec import KernelSpec
from ..state import LSTMState, concat_layer_states, state_output, state_rows
from .fused import fused_call, fused_spec, needs_grad
from .layout import Layout, Segment, layout_for
from .loop import run_loop
from .padded import padded_runs
from .steps import compiled_for, last_rows

__all__ = [
    "run_fused_segments",
    "run_fused_packed",
    "ragged_cpu_path",
    "MAX_SEGMENTS",
    "SMALL_BATCH",
    "SMALL_BATCH_ONE_THREAD",
]

MAX_SEGMENTS = 8
"""At most this many fused calls per layer and direction on a ragged batch."""


SMALL_BATCH = 16
"""Up to this many sequences, a ragged LSTM batch that needs no gradient runs padded when
PyTorch has more than one thread (see :func:`ragged_cpu_path`)."""

SMALL_BATCH_ONE_THREAD = 8
"""The same with one thread."""


def ragged_cpu_path(spec: KernelSpec, x: Tensor) -> str:
    """The path of a ragged batch on CPU for a cell with a fused mode.

    * ``"fused-padded"`` for a small LSTM batch that needs no gradient: at most
      :data:`SMALL_BATCH` sequences with more than one thread (oneDNN spreads each step's
      product over the threads, the C++ loop's few-row product does not, and with so few
      rows the padding costs little: :func:`rnnfuse.kernels.padded.run_fused_padded`), at
      most :data:`SMALL_BATCH_ONE_THREAD` with one.  Measured forward, 2-layer LSTM of 256,
      T = 100, lengths uniform in 1..T, AMD EPYC, quiet, two threads: batch 8 padded 21.0
      ms, segments 23.3, C++ loop 25.2, ``nn.LSTM`` 18.1; batch 32 (under load) padded
      67.9, loop 68.6.  With the stack's layers in one call
      (:mod:`rnnfuse.kernels.padded_stack`), one thread: batch 8 padded 34.1-34.9 ms, loop
      35.8-36.5; batch 12 39.1 vs 39.3; batch 16 69.1 vs 50.3.  For a GRU the segments
      are faster (batch 8, two threads, under load: 32.0 vs 34.0 ms).
    * ``"bptt"`` where the cell has a BPTT kernel and its compiled loop runs on ``x``: its
      cost follows the tokens exactly (no step runs past a length).  With lengths uniform
      in 1..T (B = 64, a 2-layer LSTM of 256, one thread) it costs 0.53x the full batch's
      forward+backward against 0.59x for the segments.
    * else ``"fused-segments"``.
    """
    small = SMALL_BATCH if torch.get_num_threads() > 1 else SMALL_BATCH_ONE_THREAD
    if (
        spec.mode == "lstm"
        and x.shape[0] <= small
        and not needs_grad(x, (), spec.fused_weights or ())
        and padded_runs(spec)
    ):
        return "fused-padded"
    if (
        spec.bptt is not None
        and compiled_for(x) is not None
        and not torch.is_autocast_enabled(x.device.type)
    ):
        return "bptt"
    return "fused-segments"


def _with_zero_row(parts: list[Tensor]) -> Tensor:
    return torch.cat([*parts, parts[0].new_zeros(1, parts[0].shape[-1])])


def run_fused_packed(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor,
    state: Any,
    reverse: bool,
    *,
    spec: KernelSpec | None = None,
) -> tuple[Tensor, Any]:
    """One fused call on the packed layout (``batch_sizes``), exact final states included."""
    spec = fused_spec(cell, x, spec)
    layout = layout_for(lengths, x.shape[1], reverse, None, x.shape[0])
    if layout.alive == 0:  # nothing to run (the kernels refuse empty batches)
        return run_loop(cell, x, lengths, state, reverse)
    sizes = torch.tensor(layout.batch_sizes, dtype=torch.int64)
    start = layout.sort(state)
    alive = layout.alive
    out, final = fused_call(spec, layout.gather_input(x), state_rows(start, slice(alive)), sizes)
    final = concat_layer_states([final, state_rows(start, slice(alive, None))])
    return layout.scatter_output(_with_zero_row([out])), layout.unsort(final)


def run_fused_segments(
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor,
    state: Any,
    reverse: bool,
    max_segments: int = MAX_SEGMENTS,
    *,
    spec: KernelSpec | None = None,
) -> tuple[Tensor, Any]:
    """A fused call per segment of the sorted batch; see the module docstring.

    A ReLU RNN's state is unbounded: a sequence run on past its end inside a segment could
    carry an infinite state over the padding, where the backward's ``0 · inf`` would put NaN
    into the gradients.  For it every distinct length is a segment boundary (no sequence
    runs past its end)."""
    spec = fused_spec(cell, x, spec)
    if spec.mode == "rnn_relu":
        max_segments = max(max_segments, x.shape[1])
    layout = layout_for(lengths, x.shape[1], reverse, max_segments, x.shape[0])
    if layout.alive == 0:  # nothing to run (the kernels refuse empty batches)
        return run_loop(cell, x, lengths, state, reverse)
    flat_x = layout.gather_input(x)
    start = layout.sort(state)
    carry, outs, starts, finals = start, [], [], []
    for seg in layout.segments:
        starts.append(state_rows(carry, slice(seg.rows)))
        out, carry = fused_call(spec, layout.segment_view(flat_x, seg), starts[-1])
        outs.append(out.reshape(seg.size, -1))
        finals.append(carry)
    flat_out = _with_zero_row(outs)
    h = layout.unsort(last_rows(flat_out, state_output(start), layout.last_index))
    if spec.mode != "lstm":  # the output is the state
        return layout.scatter_output(flat_out), h
    assert spec.fused_weights is not None  # fused_spec checked it
    c = _final_cells(spec.fused_weights, layout, flat_x, flat_out, starts, finals, start.c)
    return layout.scatter_output(flat_out), LSTMState(c, h)


def _final_cells(
    weights: tuple[Tensor, ...],
    layout: Layout,
    flat_x: Tensor,
    flat_out: Tensor,
    starts: list[LSTMState],
    finals: list[LSTMState],
    c0: Tensor,
) -> Tensor:
    """Every sequence's final ``c``, in the original order.

    In segment ``k`` the sorted rows ``[rows of k + 1, rows of k)`` end: those of length
    ``stop`` take ``c`` from the kernel, the others (the *tail*) are recomputed, all
    segments' tails together (:func:`_recover_cells`)."""
    lens, segs = layout.lengths, layout.segments
    exact_rows: list[int] = []
    exact_parts, tails = [], []
    for k, seg in enumerate(segs):
        ending = segs[k + 1].rows if k + 1 < len(segs) else 0
        exact = ending
        while exact < seg.rows and lens[exact] == seg.stop:
            exact += 1
        exact_parts.append(finals[k].c[ending:exact])
        exact_rows += range(ending, exact)
        if exact < seg.rows:
            tails.append((seg, exact, starts[k]))
    parts, rows = exact_parts, exact_rows
    if tails:
        parts.append(_recover_cells(weights, layout, flat_x, flat_out, tails))
        rows += [j for seg, first, _ in tails for j in range(first, seg.rows)]
    parts.append(c0[layout.alive :])
    rows += range(layout.alive, layout.batch)
    position = torch.empty(layout.batch, dtype=torch.int64)
    position[torch.tensor(rows, dtype=torch.int64)] = torch.arange(layout.batch)
    return torch.cat(parts).index_select(0, position.to(c0.device)[layout.inverse])


def _recover_cells(
    weights: tuple[Tensor, ...],
    layout: Layout,
    flat_x: Tensor,
    flat_out: Tensor,
    tails: list[tuple[Segment, int, LSTMState]],
) -> Tensor:
    """``c`` at the last step of the tail rows ``[first, seg.rows)`` of each segment, which
    end inside it.  The gates of every step they ran follow from the segment's inputs and
    outputs and the fused kernel's ``weights`` (``W_ih x + b_ih + W_hh h + b_hh``, one
    batched product for all tails); then the cell update of
    :func:`rnnfuse.cells.lstm.lstm_cell_terms`, ``c_t = keep_t c_{t-1} + write_t``, runs
    over the tails still running (ordered by decreasing number of steps, so those are a
    prefix).  Returned in the order of ``tails``, rows ascending."""
    device = flat_x.device
    need = [n - seg.start for seg, first, _ in tails for n in layout.lengths[first : seg.rows]]
    offset = [seg.offset + j for seg, first, _ in tails for j in range(first, seg.rows)]
    stride = [seg.rows for seg, first, _ in tails for _ in range(first, seg.rows)]
    order = sorted(range(len(need)), key=lambda r: -need[r])
    need_t, offset_t, stride_t = (
        torch.tensor([v[r] for r in order]) for v in (need, offset, stride)
    )
    k = torch.arange(need[order[0]]).unsqueeze(1)
    running = k < need_t.unsqueeze(0)  # (steps, tails): a prefix of the tails at every step
    x_rows = (offset_t + k * stride_t)[running]
    h_rows = (offset_t + (k[:-1]) * stride_t)[running[1:]]
    index = torch.tensor(order, device=device)
    start = state_rows(
        concat_layer_states([state_rows(s, slice(first, None)) for _, first, s in tails]), index
    )
    h_prev = torch.cat([start.h, flat_out.index_select(0, h_rows.to(device))])
    w_ih, w_hh, b_ih, b_hh = weights[:4]
    gates = F.linear(flat_x.index_select(0, x_rows.to(device)), w_ih, b_ih) + F.linear(
        h_prev, w_hh, b_hh
    )
    i, f, g, _ = gates.chunk(4, dim=-1)
    keep, write = lstm_cell_terms(i, f, g)
    c, row = start.c, 0
    for n in running.sum(1).tolist():
        c = torch.cat([torch.addcmul(write[row : row + n], keep[row : row + n], c[:n]), c[n:]])
        row += n
    back = torch.empty_like(index)
    back[index] = torch.arange(len(order), device=device)
    return c.index_select(0, back)
