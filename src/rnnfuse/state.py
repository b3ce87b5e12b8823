"""Typed recurrent states and helpers over their structure.

One type per state concept, so that no function guesses a structure from its nesting:

* a *layer state* (one layer, one direction) is an :class:`LSTMState` (``c``, ``h``) for an
  LSTM layer, or one ``Tensor`` ``(B, H)`` for a GRU or plain RNN layer;
* a *stack state* is a tuple with one entry per layer, bottom layer first; a bidirectional
  layer's entry is a :class:`BidirectionalState` ``(fw, bw)`` of its two layer states;
* a pair of directions is always a :class:`BidirectionalState`: a plain tuple is never read
  as one (it is rejected with a message naming the part).

Which shape comes from where (legend: B batch, H a layer's hidden size, P its projection):

=====================================================  ========================================
where it comes from                                    its shape
=====================================================  ========================================
a cell (``LSTMCell``, ``GRUCell``, ``RNNCell``)         layer state: ``LSTMState(c (B, H),
                                                       h (B, H) or (B, P))``; ``Tensor (B, H)``
``StackedRNN`` (any directions), its                   tuple, one entry per layer: the layer
``initial_state()`` and ``state_sizes`` (ints)         state, or ``BidirectionalState(fw, bw)``
                                                       of layer states for a bidirectional layer
``BidirectionalRNN`` (TF1's                            ``BidirectionalState(fw, bw)`` of the two
``bidirectional_dynamic_rnn``), ``tf1.`` facade of it  stacks' states (tuples, one per layer)
:func:`join_directions`, ``MultiEncoder.state``,       plain stack state: a layer state per
``StateBridge`` and the learned fusions                layer, each pair joined fw|bw (2H)
``concat_states``, ``sum_states``, ``mean_states``,    the sources' structure (each direction
``max_states``                                         fused with the same direction)
:func:`from_torch_layout` (``bidirectional=True``)     a ``StackedRNN`` state of
                                                       ``BidirectionalState`` per layer
:func:`to_keras_layout` / :func:`from_keras_layout`    one layer: ``[h, c]`` or ``[h]``
=====================================================  ========================================

``LSTMState`` and ``BidirectionalState`` are NamedTuples: they unpack as pairs
(``fw, bw = state[0]``) and ``torch.utils._pytree``, ``torch.compile``, ``torch.export`` and
the ONNX exporter see them as nodes.

Example:
    >>> import torch
    >>> from rnnfuse.state import BidirectionalState, LSTMState, structure_str
    >>> s = (LSTMState(torch.zeros(3, 20), torch.zeros(3, 20)), torch.zeros(3, 10))
    >>> structure_str(s)
    '(LSTMState(c=[3, 20], h=[3, 20]), Tensor[3, 10])'
    >>> structure_str((BidirectionalState(torch.zeros(3, 4), torch.zeros(3, 4)),))
    '(BidirectionalState(fw=Tensor[3, 4], bw=Tensor[3, 4]),)'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LSTMState",
    "BidirectionalState",
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
    """State of one LSTM layer in one direction, in TensorFlow's field order
    (``LSTMStateTuple(c, h)``).

    Attributes:
        c: the cell state, ``(B, H)``.
        h: the output, ``(B, H)``, or ``(B, P)`` for a layer with a projection of size ``P``.

    Sizes (e.g. :attr:`rnnfuse.StackedRNN.state_sizes`) use the same type with ints.

    Example:
        >>> import torch
        >>> from rnnfuse import LSTMCell
        >>> state = LSTMCell(3, 4).initial_state(2)
        >>> type(state).__name__, tuple(state.c.shape), tuple(state.h.shape)
        ('LSTMState', (2, 4), (2, 4))
    """

    c: Tensor
    h: Tensor


class BidirectionalState(NamedTuple):
    """The states of the two directions of a bidirectional layer or model.

    Attributes:
        fw: the forward direction's state.
        bw: the backward direction's state, of the same structure as ``fw``.

    Where it appears:

    * in a :class:`~rnnfuse.StackedRNN` state, as the entry of a bidirectional layer:
      ``fw`` and ``bw`` are that layer's two layer states (an :class:`LSTMState` or a
      ``Tensor`` ``(B, H)``);
    * as the state of a :class:`~rnnfuse.BidirectionalRNN` (TF1's
      ``bidirectional_dynamic_rnn``): ``fw`` and ``bw`` are the two stacks' states (tuples,
      one layer state per layer).

    A plain tuple is never read as a pair of directions: functions that meet one where a
    ``BidirectionalState`` belongs raise ``ValueError``.  :func:`join_directions` joins the
    two directions per part (fw|bw on the feature axis).

    Example:
        >>> import torch
        >>> from rnnfuse import StackedRNN
        >>> enc = StackedRNN(3, [4, 5], "gru", bidirectional=[True, False])
        >>> _, state = enc(torch.randn(2, 6, 3))
        >>> type(state[0]).__name__, tuple(state[0].bw.shape), tuple(state[1].shape)
        ('BidirectionalState', (2, 4), (2, 5))
        >>> fw, bw = state[0]  # it unpacks as a pair
    """

    fw: Any
    bw: Any


LayerState = LSTMState | Tensor
"""The state of one layer in one direction: an :class:`LSTMState` or one ``Tensor`` (B, H)."""


def map_state(fn: Callable[..., Tensor], *states: Any, check: bool = True) -> Any:
    """Apply ``fn`` leaf-wise over one or more states of the same structure.

    The structure (tuples, :class:`LSTMState`, :class:`BidirectionalState`) is kept; ``fn``
    receives one tensor of each state.  Structures are checked first (nesting, kinds, batch,
    dtype, device and feature sizes), so a mismatch raises a ``ValueError`` that names the
    part that differs; ``check=False`` skips that, for a caller that has checked already (e.g. with
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
    if isinstance(first, BidirectionalState):
        return BidirectionalState(
            _map(fn, [s.fw for s in states]), _map(fn, [s.bw for s in states])
        )
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


def concat_layer_states(states: Sequence[Any]) -> Any:
    """Concatenate the rows (the batch axis) of each part of several states of one
    structure: the inverse of splitting them with :func:`state_rows`.  (Joining several
    sources' states on the feature axis is :func:`rnnfuse.fusion.concat_states`.)

    >>> import torch
    >>> s = LSTMState(torch.zeros(2, 3), torch.zeros(2, 3))
    >>> concat_layer_states([s, state_rows(s, slice(1))]).c.shape
    torch.Size([3, 3])
    """
    return _map(lambda *ts: torch.cat(ts, dim=0), list(states))


def where_state(mask: Tensor, new: Any, old: Any) -> Any:
    """Each part of ``new`` where ``mask`` is true (non-zero), of ``old`` elsewhere;
    ``mask`` broadcasts against every part (e.g. ``(B, 1)``)."""
    keep = mask if mask.dtype == torch.bool else mask.bool()
    return _map(lambda a, b: torch.where(keep, a, b), [new, old])


def join_directions(state: Any) -> Any:
    """A plain stack state (one layer state per layer) with each pair of directions joined
    per part on the feature axis, ``fw`` first.

    Args:
        state: a stack state (a tuple, one entry per layer: a layer state, or a
            :class:`BidirectionalState` of layer states for a bidirectional layer), or a
            :class:`BidirectionalState` of two stack states (a
            :class:`~rnnfuse.BidirectionalRNN`'s).  Sizes in those structures (e.g.
            ``StackedRNN.state_sizes``) are joined as well: joined sizes add up.

    Returns:
        A tuple with one layer state per layer: a joined pair's parts are ``(B, H_fw + H_bw)``
        (``LSTMState`` parts each), the other layers' states are returned as they are.

    Raises:
        ValueError: ``state`` is not one of those structures, e.g. a plain tuple where a
            pair of directions stands (a pair must be a :class:`BidirectionalState`), two
            stacks of different depths, or directions of different kinds.

    Example:
        >>> import torch
        >>> pair = BidirectionalState(LSTMState(torch.zeros(2, 4), torch.zeros(2, 4)),
        ...                           LSTMState(torch.ones(2, 4), torch.ones(2, 4)))
        >>> structure_str(join_directions((pair, torch.zeros(2, 3))))
        '(LSTMState(c=[2, 8], h=[2, 8]), Tensor[2, 3])'
        >>> join_directions((BidirectionalState(LSTMState(4, 4), LSTMState(4, 4)), 3))
        (LSTMState(c=8, h=8), 3)
        >>> join_directions(BidirectionalState((5, 5), (3, 3)))  # two stacks of two layers
        (8, 8)
    """
    if isinstance(state, BidirectionalState):  # two stacks side by side
        fw = _stack_entries(state.fw, "state.fw", pairs=False)
        bw = _stack_entries(state.bw, "state.bw", pairs=False)
        if len(fw) != len(bw):
            raise ValueError(
                f"state: a BidirectionalState of two stacks needs as many backward layers as "
                f"forward ones, got {len(fw)} and {len(bw)}: {structure_str(state)}"
            )
        return tuple(
            _join_pair(f, b, f"state.fw[{k}] and state.bw[{k}]")
            for k, (f, b) in enumerate(zip(fw, bw, strict=True))
        )
    return tuple(
        _join_pair(entry.fw, entry.bw, f"state[{k}]")
        if isinstance(entry, BidirectionalState)
        else entry
        for k, entry in enumerate(_stack_entries(state, "state", pairs=True))
    )


def _stack_entries(state: Any, name: str, *, pairs: bool) -> list[Any]:
    """The entries of a stack state (or of a stack's sizes), checked by type: layer states,
    and where ``pairs``, ``BidirectionalState`` s of layer states."""
    if not isinstance(state, (tuple, list)) or isinstance(state, _TYPED) or not state:
        raise ValueError(
            f"{name}: expected a stack state (a tuple of layer states), got {structure_str(state)}"
        )
    for k, entry in enumerate(state):
        if _is_layer(entry) or (
            pairs
            and isinstance(entry, BidirectionalState)
            and _is_layer(entry.fw)
            and _is_layer(entry.bw)
        ):
            continue
        expected = (
            "a layer state (LSTMState or Tensor) or a BidirectionalState(fw, bw) of layer states"
            if pairs
            else "a layer state (LSTMState or Tensor)"
        )
        hint = (
            "; a pair of directions must be a BidirectionalState, a plain tuple is not read as one"
            if isinstance(entry, (tuple, list)) and not isinstance(entry, _TYPED)
            else ""
        )
        raise ValueError(f"{name}[{k}]: expected {expected}, got {structure_str(entry)}{hint}")
    return list(state)


def _is_layer(x: Any) -> bool:
    """A layer state, or a layer's sizes (an int or an LSTMState of ints)."""
    return isinstance(x, (Tensor, LSTMState)) or (isinstance(x, int) and not isinstance(x, bool))


_TYPED = (LSTMState, BidirectionalState)


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
    if isinstance(state, BidirectionalState):
        return f"BidirectionalState(fw={structure_str(state.fw)}, bw={structure_str(state.bw)})"
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
    if isinstance(a, BidirectionalState) or isinstance(b, BidirectionalState):
        if not (isinstance(a, BidirectionalState) and isinstance(b, BidirectionalState)):
            other = b if isinstance(a, BidirectionalState) else a
            return f"{where}: a BidirectionalState against {_kind(other)}"
        return _first_difference(a.fw, b.fw, f"{where}.fw", sizes) or _first_difference(
            a.bw, b.bw, f"{where}.bw", sizes
        )
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
    if isinstance(x, LSTMState):
        return "an LSTMState"
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
    """``"lstm"`` or ``"tensor"`` for each layer of a stack state; a bidirectional layer's
    entry gives its directions' kind (both directions of a layer are of one kind).

    >>> import torch
    >>> pair = BidirectionalState(torch.zeros(2, 3), torch.zeros(2, 3))
    >>> state_kinds((pair, LSTMState(torch.zeros(2, 3), torch.zeros(2, 3))))
    ('tensor', 'lstm')
    """
    return tuple(
        "lstm"
        if isinstance(s.fw if isinstance(s, BidirectionalState) else s, LSTMState)
        else "tensor"
        for s in state
    )


# ---------------------------------------------------------------- layout conversions


def to_torch_layout(state: Any) -> Tensor | tuple[Tensor, Tensor]:
    """Pack a stack state as PyTorch's ``h_n`` (GRU/RNN) or ``(h_n, c_n)`` (LSTM).

    Args:
        state: a :class:`~rnnfuse.StackedRNN` state whose layers are all unidirectional or
            all bidirectional (a :class:`BidirectionalState` per layer), of one kind and size.

    Returns:
        ``h_n`` of shape ``(L * D, B, H)`` (``D`` = 2 directions when bidirectional,
        interleaved per layer as ``torch.nn.LSTM`` returns them), and ``c_n`` for LSTM layers.

    Raises:
        ValueError: the state mixes directions, kinds or sizes, or is no stack state.

    Example:
        >>> import torch
        >>> s = (torch.zeros(2, 4), torch.ones(2, 4))
        >>> to_torch_layout(s).shape
        torch.Size([2, 2, 4])
        >>> to_torch_layout((BidirectionalState(torch.zeros(2, 4), torch.ones(2, 4)),)).shape
        torch.Size([2, 2, 4])
    """
    entries = _stack_entries(state, "state", pairs=True)
    pairs = {isinstance(e, BidirectionalState) for e in entries}
    if len(pairs) != 1:
        raise ValueError(
            f"state: PyTorch's layout needs every layer bidirectional or none; got "
            f"{structure_str(state)}"
        )
    layers = [part for e in entries for part in (e if isinstance(e, BidirectionalState) else (e,))]
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


def from_torch_layout(
    h_n: Tensor, c_n: Tensor | None = None, *, bidirectional: bool = False
) -> tuple[Any, ...]:
    """Unpack PyTorch's ``h_n`` / ``(h_n, c_n)`` into a :class:`~rnnfuse.StackedRNN` state.

    Args:
        h_n: ``(L * D, B, H)``, as ``torch.nn.LSTM``/``GRU``/``RNN`` return it.
        c_n: ``(L * D, B, H)`` for an LSTM, else ``None``.
        bidirectional: whether ``D`` is 2 (the directions interleaved per layer).

    Returns:
        A tuple with one entry per layer: an :class:`LSTMState` (with ``c_n``) or a
        ``Tensor`` ``(B, H)``; a :class:`BidirectionalState` of two of them when
        ``bidirectional``, as ``StackedRNN.from_torch(module)`` returns its state.

    Raises:
        ValueError: ``h_n`` or ``c_n`` of another shape, or an odd ``L * D`` when
            ``bidirectional``.

    Example:
        >>> import torch
        >>> h, c = torch.zeros(4, 3, 5), torch.zeros(4, 3, 5)
        >>> state = from_torch_layout(h, c, bidirectional=True)
        >>> len(state), type(state[0]).__name__, type(state[0].fw).__name__
        (2, 'BidirectionalState', 'LSTMState')
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
    return tuple(BidirectionalState(f, b) for f, b in zip(layers[0::2], layers[1::2], strict=True))


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
