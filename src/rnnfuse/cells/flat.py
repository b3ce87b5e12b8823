"""One flat buffer per cell: the parameters (and the constants the fused kernel takes
beside them) as views of one contiguous block of memory.

cuDNN runs an RNN from one weight buffer.  When the weights handed to ``torch._VF.lstm``
and its siblings are not views of one buffer in cuDNN's layout, PyTorch copies them into
one on every call and warns ("RNN module weights are not part of single contiguous chunk
of memory").  ``torch.nn.RNNBase`` avoids that with ``flatten_parameters``; a cell does
the same here, for its one layer and direction:

* each parameter stays the same :class:`torch.nn.Parameter` object (optimizers, hooks and
  ``state_dict`` keys see nothing new); only its storage is re-pointed (``set_``) into
  the flat buffer, so each keeps its own gradient;
* the constants of the fused call (an LSTM's second bias, which holds the run-time
  forget bias; zero biases of a cell built with ``bias=False``) are views of the same
  buffer, not parameters, so they never enter ``state_dict``;
* on a CUDA device whose dtype cuDNN takes, the layout is cuDNN's own, made by the same
  call ``nn.RNNBase`` makes (``torch._cudnn_rnn_flatten_weight``); elsewhere the views
  follow one another in the order the cell lists them (``nn.RNNBase`` order first).

The buffer is made again after anything that gives the parameters new storage:
``.to()``/``.cuda()``/``.half()`` (``Module._apply``), ``deepcopy``/unpickling
(``__setstate__``) and ``load_state_dict(assign=True)``; an ordinary ``load_state_dict``
and an optimizer step write into it in place.  A parameter replaced by assignment leaves
the cell correct but not flat until :func:`flatten` (``cell.flatten_parameters()``).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["FlatEntry", "flatten", "is_flat", "flat_storage_of"]


class FlatEntry(NamedTuple):
    """One member of a cell's flat buffer, in order: a parameter's name (``make`` is
    ``None``), or a constant's name and the function making its values."""

    name: str
    make: Callable[[torch.dtype, torch.device], Tensor] | None = None


def _members(
    cell: nn.Module, entries: list[FlatEntry], dtype: torch.dtype, device: torch.device
) -> list[Tensor] | None:
    """The tensors of ``entries`` (constants freshly made), or ``None`` when a parameter
    is missing or not of ``dtype`` on ``device``."""
    out = []
    for entry in entries:
        if entry.make is not None:
            out.append(entry.make(dtype, device))
            continue
        param = getattr(cell, entry.name, None)
        if not isinstance(param, Tensor) or param.dtype != dtype or param.device != device:
            return None
        out.append(param)
    return out


def _cudnn_layout(members: list[Tensor], cudnn_args: tuple | None) -> bool:
    """Re-point ``members`` into one buffer in cuDNN's layout (as ``nn.RNNBase`` does);
    ``False`` where cuDNN does not take them."""
    if cudnn_args is None or not members[0].is_cuda:
        return False
    if not all(torch.backends.cudnn.is_acceptable(m) for m in members):
        return False
    if not torch._use_cudnn_rnn_flatten_weight():
        return False
    import torch.backends.cudnn.rnn as cudnn_rnn

    mode, input_size, hidden_size, proj_size = cudnn_args
    with torch.cuda.device_of(members[0]):
        torch._cudnn_rnn_flatten_weight(
            members,
            len(members),
            input_size,
            cudnn_rnn.get_cudnn_mode(mode),
            hidden_size,
            proj_size,
            1,
            False,
            False,
        )
    return True


def _packed_layout(members: list[Tensor]) -> None:
    """Re-point ``members`` into one new buffer, one after another."""
    first = members[0]
    flat = torch.empty(sum(m.numel() for m in members), dtype=first.dtype, device=first.device)
    offset = 0
    for member in members:
        size = member.numel()
        view = flat.narrow(0, offset, size).view(member.shape)
        view.copy_(member)
        member.set_(flat.untyped_storage(), offset, view.shape, view.stride())
        offset += size


def flatten(
    cell: nn.Module, entries: list[FlatEntry], cudnn_args: tuple | None = None
) -> dict[str, Tensor]:
    """Make ``cell``'s flat buffer; returns the constants (views of it) by name, or ``{}``
    where the parameters differ in dtype or device, live on the meta device or are
    inference tensors (the cell then runs as it is, and is flattened again after the next
    ``.to()``).

    ``cudnn_args``: ``(mode, input_size, hidden_size, proj_size)`` when the entries are
    the weights of a fused kernel in ``nn.RNNBase`` order (and nothing else)."""
    params = list(cell.parameters(recurse=False))
    if not params:
        return {}
    dtype, device = params[0].dtype, params[0].device
    if device.type == "meta" or any(p.is_inference() for p in params):
        # no storage to share; inference tensors (made by .to() in inference_mode) stay as they are
        return {}
    with (
        torch.inference_mode(False),
        torch.no_grad(),
    ):  # a buffer later calls that autograd records can use
        members = _members(cell, entries, dtype, device)
        if members is None or any(p.dtype != dtype or p.device != device for p in params):
            return {}
        if not _cudnn_layout(members, cudnn_args):
            _packed_layout(members)
    return {e.name: m for e, m in zip(entries, members, strict=True) if e.make is not None}


def flat_storage_of(tensor: Tensor) -> int:
    """The address of the storage ``tensor`` is a view of."""
    return tensor.untyped_storage().data_ptr()


def is_flat(tensors: list[Tensor]) -> bool:
    """Whether ``tensors`` are contiguous views of one storage that do not overlap."""
    if not tensors:
        return False
    base = flat_storage_of(tensors[0])
    spans = []
    for t in tensors:
        if flat_storage_of(t) != base or not t.is_contiguous():
            return False
        spans.append((t.storage_offset(), t.storage_offset() + t.numel()))
    spans.sort()
    return all(end <= start for (_, end), (start, _) in pairwise(spans))
