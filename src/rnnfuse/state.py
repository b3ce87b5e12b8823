"""Typed recurrent states and helpers over their structure.

A *layer state* is either an :class:`LSTMState` (``c``, ``h``), for LSTM layers, or one
``Tensor`` ``(B, H)``, for GRU and plain RNN layers.  A *stack state* is a tuple with one
layer state per layer, bottom layer first.  A bidirectional stack's state is the pair
``(fw_state, bw_state)`` of two stack states.  A mixed-direction stack's state
(``StackedRNN(..., bidirectional=[True, False, False])``) has one entry per layer: an
``(fw, bw)`` pair of layer states for a bidirectional layer, a layer state otherwise.
:func:`join_directions` turns either into a plain stack state (fw|bw per part).

Example:
    >>> import torch
    >>> from rnnfuse.state import LSTMState, structure_str
    >>> s = (LSTMState(torch.zeros(3, 20), torch.zeros(3, 20)), torch.zeros(3, 10))
    >>> structure_str(s)
    '(LSTMState(c=[3, 20], h=[3, 20]), Tensor[3, 10])'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LSTMState",
    "LayerState",
    "map_state",
    "state_output",
    "state_rows",
    "concat_layer_states",
    "where_state",
    "layer_parts",
    "layer_from_parts",
    "join_directions",
    "flatten_state",
    "structure_str",
    "assert_same_structure",
    "zeros_like_state",
    "state_sizes",
    "state_kinds",
    "to_torch_layout",
    "from_torch_layout",
    "to_keras_layout",
    "from_keras_layout",
]


class LSTMState(NamedTuple):
    """State of one LSTM layer, in TensorFlow's field order (``LSTMStateTuple(c, h)``).

    ``c`` is the cell state ``(B, H)``; ``h`` is the output ``(B, H)``, or ``(B, P)`` for a
    layer with a projection of size ``P``.
    """

    c: Tensor
    h: Tensor


LayerState = LSTMState | Tensor
"""The state of one layer in one direction: an :class:`LSTMState` or one ``Tensor`` (B, H)."""


def map_state(fn: Callable[..., Tensor], *states: Any, check: bool = True) -> Any:
    """Apply ``fn`` leaf-wise over one or more states of the same structure.

    The structure (tuples, :class:`LSTMState`) is kept; ``fn`` receives one tensor of each
    state.  Structures are checked first (nesting, kinds, batch, dtype, device and feature
    sizes), so a mismatch raises a ``ValueError`` that names the part that differs;
    ``check=False`` skips that, for a caller that has checked already (e.g. with
    :func:`assert_same_structure` and other rules).

    >>> import torch
    >>> s = (LSTMState(torch.ones(2, 3), torch.ones(2, 3)),)
    >>> map_state(lambda t: 2 * t, s)[0].c.sum().item()
    12.0
    """
    if not states:
        raise TypeError("map_state() needs at least one state")
    if check:
        for i, other in enumerate(states[1:], start=1):
            assert_same_structure(states[0], other, names=("states[0]", f"states[{i}]"))
    return _map(fn, states)


def _map(fn: Callable[..., Tensor], states: Sequence[Any]) -> Any:
    first = states[0]
    if isinstance(first, Tensor):
        return fn(*states)
    if isinstance(first, LSTMState):
        return LSTMState(fn(*(s.c for s in states)), fn(*(s.h for s in states)))
    return tuple(_map(fn, [s[i] for s in states]) for i in range(len(first)))


# ---------------------------------------------------------------- per-row helpers
# The kernels and the fusion modules work on layer states; these helpers are the only
# places that tell an LSTMState from a Tensor for them.  They do not check structures.


def state_output(layer_state: Any) -> Any:
    """The output part of a layer state: ``h`` of an :class:`LSTMState`, else the tensor.
    Works on a layer's sizes as well (``LSTMState(c=H, h=P)`` → ``P``).

    >>> import torch
    >>> state_output(LSTMState(torch.zeros(2, 4), torch.ones(2, 3))).shape
    torch.Size([2, 3])
    """
    return layer_state.h if isinstance(layer_state, LSTMState) else layer_state


def layer_parts(layer_state: Any) -> dict[str, Any]:
    """The parts of a layer state (or of a layer's sizes) by name: ``{"c": c, "h": h}`` for
    an :class:`LSTMState`, ``{"h": x}`` otherwise.  Inverse: :func:`layer_from_parts`.

    >>> layer_parts(LSTMState(4, 3)), layer_parts(5)
    ({'c': 4, 'h': 3}, {'h': 5})
    """
    if isinstance(layer_state, LSTMState):
        return {"c": layer_state.c, "h": layer_state.h}
    return {"h": layer_state}


def layer_from_parts(parts: dict[str, Any]) -> Any:
    """Inverse of :func:`layer_parts`: an :class:`LSTMState` if there is a ``"c"`` part."""
    return LSTMState(parts["c"], parts["h"]) if "c" in parts else parts["h"]


def state_rows(state: Any, index: slice | Tensor) -> Any:
    """Rows (the batch axis, dim 0) of every part of a state: a ``slice``, or an int64
    index ``Tensor`` (``index_select``: e.g. a sort order or its inverse).

    >>> import torch
    >>> s = LSTMState(torch.arange(4.0).view(4, 1), torch.zeros(4, 2))
    >>> state_rows(s, torch.tensor([3, 0])).c.flatten().tolist()
    [3.0, 0.0]
    >>> state_rows(s, slice(1)).h.shape
    torch.Size([1, 2])
    """
    if isinstance(index, Tensor):
        return _map(lambda t: t.index_select(0, index), [state])
    return _map(lambda t: t[index], [state])


def concat_layer_states(states: Sequence[Any], dim: int = 0) -> Any:
    """Concatenate each part of several states of one structure along ``dim`` (0: the
    batch rows; -1: the features)."""
    return _map(lambda *ts: torch.cat(ts, dim=dim), list(states))


def where_state(mask: Tensor, new: Any, old: Any) -> Any:
    """Each part of ``new`` where ``mask`` is true (non-zero), of ``old`` elsewhere;
    ``mask`` broadcasts against every part (e.g. ``(B, 1)``)."""
    keep = mask if mask.dtype == torch.bool else mask.bool()
    return _map(lambda a, b: torch.where(keep, a, b), [new, old])


def join_directions(state: Any) -> Any:
    """A plain stack state (one layer state per layer) with every bidirectional layer's
    ``(fw, bw)`` joined per part on the feature axis, ``fw`` first.

    ``state`` is a plain stack state (returned as a tuple, unchanged), a bidirectional
    stack's ``(fw_state, bw_state)``, or a mixed-direction state (an ``(fw, bw)`` pair for
    each bidirectional layer, a layer state for the others).  It also takes sizes in those
    structures (e.g. ``StackedRNN.state_sizes``; joined sizes add up).  A tuple whose every
    entry is a tuple is read as ``(fw_state, bw_state)``: a stack whose layers are all
    bidirectional gives that, never a pair per layer.  This is what
    :func:`rnnfuse.encoders.merge_directions` computes from a stack's ``bidirectional``.

    >>> import torch
    >>> pair = (
    ...     LSTMState(torch.zeros(2, 4), torch.zeros(2, 4)),
    ...     LSTMState(torch.ones(2, 4), torch.ones(2, 4)),
    ... )
    >>> structure_str(join_directions((pair, torch.zeros(2, 3))))
    '(LSTMState(c=[2, 8], h=[2, 8]), Tensor[2, 3])'
    >>> join_directions(((LSTMState(4, 4), LSTMState(4, 4)), 3))
    (LSTMState(c=8, h=8), 3)
    """
    if not isinstance(state, (tuple, list)) or isinstance(state, LSTMState) or not state:
        raise ValueError(
            f"state: expected a stack state (a tuple of layer states), got {structure_str(state)}"
        )
    entries = list(state)
    if all(_is_layer(e) for e in entries):
        return tuple(entries)
    if len(entries) == 2 and all(_is_stack(e) for e in entries):  # (fw_state, bw_state)
        fw, bw = entries
        if len(fw) != len(bw):
            raise ValueError(
                f"state: a bidirectional state needs as many backward layers as forward "
                f"ones, got {len(fw)} and {len(bw)}: {structure_str(state)}"
            )
        return tuple(
            _join_pair(f, b, f"state[0][{k}] and state[1][{k}]")
            for k, (f, b) in enumerate(zip(fw, bw, strict=True))
        )
    joined = []
    for k, entry in enumerate(entries):
        if _is_layer(entry):
            joined.append(entry)
        elif _is_stack(entry) and len(entry) == 2:
            joined.append(_join_pair(entry[0], entry[1], f"state[{k}]"))
        else:
            raise ValueError(
                f"state[{k}]: expected a layer state or an (fw, bw) pair of layer states, "
                f"got {structure_str(entry)} in {structure_str(state)}"
            )
    return tuple(joined)


def _is_layer(x: Any) -> bool:
    """A layer state, or a layer's sizes (an int or an LSTMState of ints)."""
    return isinstance(x, (Tensor, LSTMState)) or (isinstance(x, int) and not isinstance(x, bool))


def _is_stack(x: Any) -> bool:
    return (
        isinstance(x, (tuple, list))
        and not isinstance(x, LSTMState)
        and bool(x)
        and all(map(_is_layer, x))
    )


def _join_pair(fw: Any, bw: Any, where: str) -> Any:
    if isinstance(fw, LSTMState) != isinstance(bw, LSTMState):
        raise ValueError(
            f"{where}: the two directions differ in kind: {structure_str(fw)} "
            f"and {structure_str(bw)}"
        )
    if not isinstance(fw, (Tensor, LSTMState)):  # sizes of a GRU/RNN layer
        return fw + bw
    return _map(
        lambda a, b: torch.cat([a, b], dim=-1) if isinstance(a, Tensor) else a + b, [fw, bw]
    )


def flatten_state(state: Any) -> list[Tensor]:
    """All tensors of a state, depth first (``c`` before ``h`` in an LSTM layer)."""
    if isinstance(state, Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [t for part in state for t in flatten_state(part)]
    raise TypeError(f"a state holds Tensors, LSTMStates and tuples; got {type(state).__name__}")


def structure_str(state: Any) -> str:
    """A short description of a state's structure and shapes, for error messages."""
    if isinstance(state, Tensor):
        return f"Tensor{list(state.shape)}"
    if isinstance(state, LSTMState):
        return f"LSTMState(c={_shape_str(state.c)}, h={_shape_str(state.h)})"
    if isinstance(state, (tuple, list)):
        inner = ", ".join(structure_str(s) for s in state)
        return f"({inner},)" if len(state) == 1 else f"({inner})"
    return type(state).__name__


def _shape_str(t: Any) -> str:
    return str(list(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def assert_same_structure(
    a: Any,
    b: Any,
    *,
    names: tuple[str, str] = ("first", "second"),
    check_feature_sizes: bool = True,
) -> None:
    """Raise ``ValueError`` unless ``a`` and ``b`` have the same structure.

    Compared: nesting, LSTM layer vs. tensor layer, batch size, dtype, device and (unless
    ``check_feature_sizes=False``) the feature size of every part.  The message names the
    layer and part that differ and shows both structures.
    """
    problem = _first_difference(a, b, "state", check_feature_sizes)
    if problem is not None:
        raise ValueError(
            f"{names[0]} and {names[1]} differ at {problem}.\n"
            f"  {names[0]}: {structure_str(a)}\n  {names[1]}: {structure_str(b)}"
        )


def _first_difference(a: Any, b: Any, where: str, sizes: bool) -> str | None:
    if isinstance(a, LSTMState) or isinstance(b, LSTMState):
        if not (isinstance(a, LSTMState) and isinstance(b, LSTMState)):
            return (
                f"{where}: an LSTMState against {_kind(a if not isinstance(a, LSTMState) else b)}"
            )
        return _first_difference(a.c, b.c, f"{where}.c", sizes) or _first_difference(
            a.h, b.h, f"{where}.h", sizes
        )
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return f"{where}: a Tensor against {_kind(b if isinstance(a, Tensor) else a)}"
        return _tensor_difference(a, b, where, sizes)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        if len(a) != len(b):
            return f"{where}: {len(a)} entries against {len(b)} (layer counts differ)"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{where}[{i}]", sizes)
            if found:
                return found
        return None
    return f"{where}: {type(a).__name__} against {type(b).__name__}"


def _kind(x: Any) -> str:
    if isinstance(x, Tensor):
        return "a Tensor"
    if isinstance(x, (tuple, list)):
        return f"a tuple of {len(x)}"
    return f"a {type(x).__name__}"


def _tensor_difference(a: Tensor, b: Tensor, where: str, sizes: bool) -> str | None:
    if a.dim() != b.dim():
        return f"{where}: rank {a.dim()} against {b.dim()}"
    if a.dim() >= 1 and a.shape[0] != b.shape[0]:
        return f"{where}: batch size {a.shape[0]} against {b.shape[0]}"
    if sizes and a.shape[1:] != b.shape[1:]:
        return f"{where}: feature size {list(a.shape[1:])} against {list(b.shape[1:])}"
    if a.dtype != b.dtype:
        return f"{where}: dtype {a.dtype} against {b.dtype}"
    if a.device != b.device:
        return f"{where}: device {a.device} against {b.device}"
    return None


def zeros_like_state(state: Any) -> Any:
    """A state of the same structure, shapes, dtype and device, filled with zeros."""
    return _map(torch.zeros_like, [state])


def state_sizes(state: Any) -> Any:
    """The feature size of each part, in the state's structure (``LSTMState`` of ints)."""
    return _map(lambda t: t.shape[-1], [state])


def state_kinds(state: Any) -> tuple[str, ...]:
    """``"lstm"`` or ``"tensor"`` for each layer of a stack state."""
    return tuple("lstm" if isinstance(s, LSTMState) else "tensor" for s in state)


# ---------------------------------------------------------------- layout conversions


def to_torch_layout(state: Any, *, bidirectional: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Pack a stack state as PyTorch's ``h_n`` (GRU/RNN) or ``(h_n, c_n)`` (LSTM).

    Shapes are ``(layers * directions, B, H)`` with directions interleaved per layer, as
    ``torch.nn.LSTM`` returns them.  Every layer must be of one kind and one size.

    >>> import torch
    >>> s = (torch.zeros(2, 4), torch.ones(2, 4))
    >>> to_torch_layout(s).shape
    torch.Size([2, 2, 4])
    """
    if bidirectional:
        fw, bw = _split_bidirectional(state, "state")
        if len(fw) != len(bw):
            raise ValueError(
                f"state: a bidirectional state needs as many backward layers as forward "
                f"ones, got {len(fw)} and {len(bw)}: {structure_str(state)}"
            )
        layers = [layer for pair in zip(fw, bw, strict=True) for layer in pair]
    else:
        layers = list(state)
    if not layers:
        raise ValueError("state: expected at least one layer, got an empty tuple")
    kinds = {isinstance(s, LSTMState) for s in layers}
    if len(kinds) != 1:
        raise ValueError(
            f"state: PyTorch's layout needs every layer of one kind; got {structure_str(state)}"
        )
    if len({structure_str(s) for s in layers}) != 1:
        raise ValueError(
            f"state: PyTorch's layout needs every layer of one size; got {structure_str(state)}"
        )
    if isinstance(layers[0], LSTMState):
        return torch.stack([s.h for s in layers]), torch.stack([s.c for s in layers])
    return torch.stack(layers)


def _split_bidirectional(state: Any, name: str) -> tuple[tuple, tuple]:
    if not (isinstance(state, tuple) and len(state) == 2 and not isinstance(state, LSTMState)):
        raise ValueError(
            f"{name}: expected a (fw_state, bw_state) pair, got {structure_str(state)}"
        )
    return state[0], state[1]


def from_torch_layout(
    h_n: Tensor, c_n: Tensor | None = None, *, bidirectional: bool = False
) -> Any:
    """Unpack PyTorch's ``h_n`` / ``(h_n, c_n)`` into a stack state (or an fw/bw pair).

    >>> import torch
    >>> h, c = torch.zeros(4, 3, 5), torch.zeros(4, 3, 5)
    >>> fw, bw = from_torch_layout(h, c, bidirectional=True)
    >>> len(fw), type(fw[0]).__name__
    (2, 'LSTMState')
    """
    if h_n.dim() != 3:
        raise ValueError(f"h_n: expected shape (layers*directions, B, H), got {list(h_n.shape)}")
    if c_n is not None and (c_n.dim() != 3 or c_n.shape[:2] != h_n.shape[:2]):
        raise ValueError(f"c_n: expected shape {list(h_n.shape[:2])} + [H], got {list(c_n.shape)}")
    layers: list[Any] = (
        [LSTMState(c_n[i], h_n[i]) for i in range(h_n.shape[0])]
        if c_n is not None
        else [h_n[i] for i in range(h_n.shape[0])]
    )
    if not bidirectional:
        return tuple(layers)
    if len(layers) % 2:
        raise ValueError(
            f"h_n: a bidirectional state needs an even first dimension, got {len(layers)}"
        )
    return tuple(layers[0::2]), tuple(layers[1::2])


def to_keras_layout(layer_state: LayerState) -> list[Tensor]:
    """Keras 3 order for one layer: ``[h, c]`` for an LSTM layer, ``[h]`` otherwise."""
    if isinstance(layer_state, LSTMState):
        return [layer_state.h, layer_state.c]
    if isinstance(layer_state, Tensor):
        return [layer_state]
    raise TypeError(
        f"layer_state: expected an LSTMState or a Tensor, got {type(layer_state).__name__}"
    )


def from_keras_layout(states: Sequence[Tensor]) -> LayerState:
    """Inverse of :func:`to_keras_layout`: ``[h, c]`` → ``LSTMState(c, h)``, ``[h]`` → ``h``."""
    states = list(states)
    if len(states) == 2:
        return LSTMState(c=states[1], h=states[0])
    if len(states) == 1:
        return states[0]
    raise ValueError(f"states: expected [h, c] or [h], got a list of {len(states)}")
