"""Where each (sequence, step) of a ragged batch lives while a layer runs.

A fast path never asks the user to sort.  It sorts internally: row ``j`` of the sorted
batch is sequence ``order[j]``, lengths decrease with ``j``, so the sequences alive at step
``t`` are a prefix of ``batch_sizes[t]`` rows (PyTorch's packed layout).  Time is cut into
*segments* ``[start, stop)``; a segment runs the ``rows`` sequences alive at ``start``, all
of them for every step of the segment.  The segments' inputs and outputs are stored one
after another as the rows of one flat ``(N, features)`` tensor, row
``offset + (t - start) * rows + j`` holding step ``t`` of sorted sequence ``j``.

Two index gathers move data in and out of that layout, folding together the sort, the
reversal within each length (the backward direction) and the zero padding past each
length (a padded position reads an appended zero row), so each costs one copy.  A segment
runs the sequences that end inside it on over their padding; the gather in sets those rows
to zero (whatever the caller's padding holds, NaN included, it reaches no product, so
neither the outputs nor any gradient):

>>> import torch
>>> lay = make_layout(torch.tensor([1, 3, 2]), steps=3, reverse=False, max_segments=3)
>>> lay.batch_sizes, [tuple(s) for s in lay.segments]
((3, 2, 1), [(0, 1, 3, 0), (1, 2, 2, 3), (2, 3, 1, 5)])
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

from ..state import state_rows

__all__ = ["Segment", "Layout", "make_layout", "layout_for", "kept_for_lengths", "segment_bounds"]


class Segment(NamedTuple):
    """Steps ``[start, stop)`` of the ``rows`` first sorted sequences, from flat row ``offset``."""

    start: int
    stop: int
    rows: int
    offset: int

    @property
    def size(self) -> int:
        """Number of flat rows the segment occupies."""
        return (self.stop - self.start) * self.rows


@dataclass(frozen=True)
class Layout:
    """A sorted, segmented, time-major layout of a ragged batch (see the module docstring)."""

    batch: int
    steps: int
    lengths: tuple[int, ...]  # sorted lengths, decreasing
    batch_sizes: tuple[int, ...]  # alive rows per step, for steps < lengths[0]
    segments: tuple[Segment, ...]
    order: Tensor  # (B,) sorted row j is sequence order[j]
    inverse: Tensor  # (B,) sequence b is sorted row inverse[b]
    in_index: Tensor  # (N,) rows of x.reshape(B * T, F), in the flat layout
    out_index: Tensor  # (B * T,) rows of the flat outputs plus one trailing zero row
    last_index: Tensor  # (alive,) flat row of the last step of each sorted sequence of length > 0
    pad_index: (
        Tensor  # flat rows at a step past their sequence's length (none in the packed layout)
    )

    @property
    def alive(self) -> int:
        """Number of sequences of length > 0 (the first rows of the sorted batch)."""
        return self.batch_sizes[0] if self.batch_sizes else 0

    def gather_input(self, x: Tensor) -> Tensor:
        """``x`` (B, T, F) → flat rows ``(N, F)`` in this layout, zero at the rows past a
        sequence's length (:attr:`pad_index`)."""
        flat = x.reshape(self.batch * self.steps, x.shape[-1]).index_select(0, self.in_index)
        if self.pad_index.numel():
            flat.index_fill_(
                0, self.pad_index, 0.0
            )  # fresh from the gather, which keeps nothing for its backward
        return flat

    def scatter_output(self, flat: Tensor) -> Tensor:
        """Flat outputs ``(N + 1, H)`` whose last row is zero → ``(B, T, H)``, zero past lengths."""
        out = flat.index_select(0, self.out_index)
        return out.view(self.batch, self.steps, flat.shape[-1])

    def segment_view(self, flat: Tensor, seg: Segment) -> Tensor:
        """The rows of ``seg`` in ``flat`` as ``(stop - start, rows, features)``."""
        return flat[seg.offset : seg.offset + seg.size].view(seg.stop - seg.start, seg.rows, -1)

    def sort(self, state: Any) -> Any:
        """Rows of a per-sequence tensor (B, ...) or layer state in sorted order."""
        return state_rows(state, self.order)

    def unsort(self, state: Any) -> Any:
        """Inverse of :meth:`sort`."""
        return state_rows(state, self.inverse)


def segment_bounds(lengths: list[int], max_segments: int) -> list[int]:
    """Segment boundaries ``0 = b_0 < ... < b_K = max length``, each an actual length.

    With at most ``max_segments`` distinct lengths every boundary is one of them, so every
    sequence ends exactly at a boundary.  Otherwise the boundaries are the lengths at evenly
    spaced ranks of the sorted batch (quantiles), which bounds the work spent on
    sequences that end inside a segment to about ``1 / (2K)`` of the tokens.
    """
    distinct = sorted({n for n in lengths if n > 0})
    if not distinct:
        return [0]
    if len(distinct) <= max_segments:
        return [0, *distinct]
    if max_segments <= 1:
        return [0, distinct[-1]]
    ranked = sorted((n for n in lengths if n > 0), reverse=True)
    picks = {ranked[round(k * (len(ranked) - 1) / (max_segments - 1))] for k in range(max_segments)}
    return [0, *sorted(picks)]


def make_layout(
    lengths: Tensor | None,
    steps: int,
    reverse: bool,
    max_segments: int | None,
    batch: int | None = None,
    device: torch.device | None = None,
) -> Layout:
    """The layout of a batch with ``lengths`` (B,) (``None``: every sequence full).

    ``max_segments=None`` gives one segment per step (the packed layout, no padding at all).
    The index tensors go to ``lengths``' device, or to ``device`` when ``lengths`` is ``None``.
    """
    if lengths is None:
        if batch is None:
            raise ValueError("make_layout: pass batch when lengths is None")
        lens_cpu = torch.full((batch,), steps, dtype=torch.int64)
    else:
        lens_cpu, device = lengths.detach().to("cpu", torch.int64), lengths.device
    sorted_lens, order = torch.sort(lens_cpu, descending=True, stable=True)
    lens = sorted_lens.tolist()
    longest = lens[0] if lens else 0
    sizes = (sorted_lens.unsqueeze(0) > torch.arange(longest).unsqueeze(1)).sum(1)
    if max_segments is None:
        bounds = list(range(longest + 1))
    else:
        bounds = segment_bounds(lens, max_segments)
    segments = _segments(sizes.tolist(), bounds)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel())
    indices = _indices(sorted_lens, order, inverse, segments, steps, reverse)
    return Layout(
        batch=len(lens),
        steps=steps,
        lengths=tuple(lens),
        batch_sizes=tuple(sizes.tolist()),
        segments=tuple(segments),
        **{
            name: t if device is None else t.to(device)
            for name, t in zip(
                ["order", "inverse", "in_index", "out_index", "last_index", "pad_index"],
                (order, inverse, *indices),
                strict=True,
            )
        },
    )


_RECENT: OrderedDict[tuple, Any] = OrderedDict()
_RECENT_SIZE = 16
_RECENT_LOCK = threading.Lock()
_T = TypeVar("_T")


def kept_for_lengths(lengths: Tensor | None, key: tuple, make: Callable[[], _T]) -> _T:
    """``make()``, remembered among the last few values made from the same lengths: a stack
    passes one ``lengths`` tensor to every layer, so only its first layer makes it.

    The key is the lengths' values (their bytes, read on the CPU: B integers, which every
    path reads anyway, a sync on CUDA included), dtype and device, and ``key`` (which names
    the kind of value and everything else it depends on) -- not the tensor's identity and
    version counter, which miss a write the counter does not see (through ``.data`` or a
    NumPy array sharing the memory).  ``lengths`` ``None`` keys on ``key`` alone.
    """
    if lengths is None:
        full: tuple = (None, *key)
    else:
        values = lengths if lengths.device.type == "cpu" else lengths.detach().cpu()
        full = (values.numpy().tobytes(), lengths.dtype, lengths.device, *key)
    with _RECENT_LOCK:  # replicas of nn.DataParallel call from several threads
        found = _RECENT.get(full)
        if found is not None:
            _RECENT.move_to_end(full)
            return found
    with torch.inference_mode(False):  # a kept value may serve a later call that autograd records
        value = make()
    with _RECENT_LOCK:
        _RECENT[full] = value
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)
    return value


def layout_for(
    lengths: Tensor | None,
    steps: int,
    reverse: bool,
    max_segments: int | None,
    batch: int,
    device: torch.device | None = None,
) -> Layout:
    """:func:`make_layout`, remembered per lengths values (:func:`kept_for_lengths`).
    ``device`` places the layout when ``lengths`` is ``None``."""
    key = ("layout", steps, reverse, max_segments) + ((batch, device) if lengths is None else ())
    return kept_for_lengths(
        lengths, key, lambda: make_layout(lengths, steps, reverse, max_segments, batch, device)
    )


def _segments(sizes: list[int], bounds: list[int]) -> list[Segment]:
    segments, offset = [], 0
    for start, stop in pairwise(bounds):
        segments.append(Segment(start, stop, sizes[start], offset))
        offset += (stop - start) * sizes[start]
    return segments


def _within(t: Tensor, lens: Tensor, reverse: bool) -> Tensor:
    """Source step of step ``t`` (T', 1) for sequences of length ``lens`` (1, B'): ``t``
    itself, or ``L - 1 - t`` inside the length when ``reverse`` (TF1's reverse_sequence)."""
    t = t.expand(-1, lens.shape[-1])
    return torch.where(t < lens, lens - 1 - t, t) if reverse else t


def _indices(
    sorted_lens: Tensor,
    order: Tensor,
    inverse: Tensor,
    segments: list[Segment],
    steps: int,
    reverse: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The index tensors of a :class:`Layout` (int64, on the CPU: ``in_index``,
    ``out_index``, ``last_index``, ``pad_index``), built without a Python loop over steps: the
    flat layout is the (step, row) grid read in row-major order where ``row < rows of the
    step's segment``."""
    rows_total = sum(s.size for s in segments)
    longest = segments[-1].stop if segments else 0
    seg_steps = torch.tensor([s.stop - s.start for s in segments], dtype=torch.int64)
    step_rows = torch.tensor([s.rows for s in segments], dtype=torch.int64).repeat_interleave(
        seg_steps
    )
    step_offset = torch.full((steps + 1,), rows_total, dtype=torch.int64)
    step_offset[:longest] = torch.cumsum(step_rows, 0) - step_rows
    t = torch.arange(longest).unsqueeze(1)
    rows = torch.arange(order.numel()).unsqueeze(0)
    src = order.unsqueeze(0) * steps + _within(t, sorted_lens.unsqueeze(0), reverse)
    stored = rows < step_rows.unsqueeze(1)
    in_index = src[stored]
    pad_index = (t >= sorted_lens.unsqueeze(0))[stored].nonzero().squeeze(1)
    # output position (b, t) reads sorted row inverse[b] at its (maybe reversed) step
    lens_b = sorted_lens[inverse].unsqueeze(0)
    t = torch.arange(steps).unsqueeze(1)
    src_t = _within(t, lens_b, reverse)
    out = torch.where(t < lens_b, step_offset[src_t] + inverse.unsqueeze(0), rows_total)
    alive = int((sorted_lens > 0).sum())
    last_index = step_offset[sorted_lens[:alive] - 1] + torch.arange(alive)
    return in_index, out.t().reshape(-1), last_index, pad_index
