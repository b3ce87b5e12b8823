"""Fusing the states and outputs of several encoders, keeping the state's structure.

Functions (no parameters): :func:`concat_states`, :func:`sum_states`, :func:`mean_states`,
:func:`max_states`, :func:`concat_outputs`.  Modules (learned): :class:`StateBridge`,
:class:`ZophKnightFusion`, :class:`ChildSumFusion`, :class:`GatedFusion`.  All take a
sequence of stack states (one per source) and return one stack state; an LSTM layer stays
an :class:`~rnnfuse.LSTMState` with ``c`` and ``h`` each fused.

Sources are given as a list (any sequence) of states, one per source; a source is a stack
state (a tuple, one entry per layer) or a :class:`~rnnfuse.BidirectionalRNN`'s
:class:`~rnnfuse.state.BidirectionalState` of two stacks.  A sequence whose entries are layer
states (one stack's state) is refused: it would fuse that stack's own layers.

Bidirectional sources: the functions keep the structure, so each
:class:`~rnnfuse.state.BidirectionalState` (a bidirectional layer's entry, or a
``BidirectionalRNN``'s state) stays one, each direction fused with the same direction of the
other sources.  The learned modules (and :class:`StateBridge`) first join each source's
directions per part on the feature axis (fw|bw, :func:`rnnfuse.state.join_directions`, what
:class:`~rnnfuse.MultiEncoder` does), so they return a plain stack state and their sizes are
the joined ones; they also take sizes in the directions' structure (e.g.
``encoder.state_sizes``) and join them the same way.

>>> import torch
>>> from rnnfuse import LSTMState, concat_states
>>> local = (LSTMState(torch.zeros(3, 20), torch.zeros(3, 20)), torch.zeros(3, 20))
>>> glob = (LSTMState(torch.ones(3, 20), torch.ones(3, 20)), torch.ones(3, 20))
>>> fused = concat_states([local, glob])
>>> fused[0].c.shape, fused[1].shape
(torch.Size([3, 40]), torch.Size([3, 40]))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from ._checks import check_lengths, describe
from .state import (
    BidirectionalState,
    LSTMState,
    assert_same_structure,
    join_directions,
    layer_from_parts,
    layer_parts,
    map_state,
    state_output,
    state_sizes,
    structure_str,
)

__all__ = [
    "concat_states",
    "sum_states",
    "mean_states",
    "max_states",
    "concat_outputs",
    "StateBridge",
    "ZophKnightFusion",
    "ChildSumFusion",
    "GatedFusion",
    "FUSION_FUNCTIONS",
]


def _check_sources(states: Any, same_sizes: bool, minimum: int = 2) -> list[Any]:
    """``states`` as a list of sources of one structure (sizes too if ``same_sizes``)."""
    states = _source_list(states, minimum)
    _check_same_structure(states, same_sizes)
    return states


def _check_same_structure(states: list[Any], same_sizes: bool) -> None:
    for i in range(1, len(states)):
        try:
            assert_same_structure(
                states[0],
                states[i],
                names=("states[0]", f"states[{i}]"),
                check_feature_sizes=same_sizes,
            )
        except ValueError as exc:
            if same_sizes and "feature size" in str(exc):
                raise ValueError(
                    f"{exc}\n  sum, mean and max need equal sizes; concat_states joins states of "
                    f"different sizes, and StateBridge maps them to one size"
                ) from None
            raise


def _source_list(states: Any, minimum: int) -> list[Any]:
    """``states`` as a list of ``minimum`` or more sources, refusing one stack state."""
    if isinstance(states, (Tensor, LSTMState, BidirectionalState)) or not isinstance(
        states, Sequence
    ):
        raise TypeError(
            f"states: expected a list of {minimum} or more states (one per source), got "
            f"{type(states).__name__}"
        )
    states = list(states)
    if any(_is_layer_entry(s) for s in states):  # layer entries: ONE stack's state
        raise TypeError(
            "states: expected a list of states, one per encoder, e.g. [state_a, state_b]; got one "
            f"stack state {structure_str(tuple(states))} (a tuple of layer states, which would "
            "fuse its own layers)"
        )
    if len(states) < minimum:
        raise ValueError(
            f"states: expected {minimum} or more states (one per source), got {len(states)}"
        )
    return states


def _is_layer_entry(x: Any) -> bool:
    """An entry of one stack's state: a layer state, or a bidirectional layer's pair of them
    (a ``BidirectionalRNN``'s pair holds two stack states: a source)."""
    if isinstance(x, BidirectionalState):
        return isinstance(x.fw, (Tensor, LSTMState))
    return isinstance(x, (Tensor, LSTMState))


def concat_states(states: Sequence[Any]) -> Any:
    """Join each part on the feature axis; sources may have different sizes.

    Args:
        states: one state per source (two or more), of one structure: a stack state (a
            tuple of ``L`` entries: ``LSTMState(c, h)`` of ``(B, H_k)`` tensors or one
            ``(B, H_k)`` tensor per layer, a :class:`~rnnfuse.state.BidirectionalState`
            ``(fw, bw)`` of those for a bidirectional layer), or a ``BidirectionalRNN``'s
            ``BidirectionalState`` of two stack states.

    Returns:
        One stack state of the same structure, each part ``(B, H_1 + ... + H_n)``: per layer
        ``LSTMState(cat(c_k), cat(h_k))`` or ``cat(h_k)``; each ``BidirectionalState`` stays one,
        each direction joined with the same direction of the other sources.

    Raises:
        TypeError: ``states`` is one stack state rather than a list of them.
        ValueError: fewer than two sources, or sources of different structures (layers,
            kinds, directions, batch).

    Example:
        >>> import torch
        >>> from rnnfuse import StackedRNN
        >>> x = torch.randn(3, 5, 6)
        >>> _, a = StackedRNN(6, [20, 10])(x)
        >>> _, b = StackedRNN(6, [4, 2])(x)
        >>> [tuple(layer.c.shape) for layer in concat_states([a, b])]
        [(3, 24), (3, 12)]
        >>> _, bi_a = StackedRNN(6, [4], "gru", bidirectional=True)(x)
        >>> _, bi_b = StackedRNN(6, [5], "gru", bidirectional=True)(x)
        >>> fused = concat_states([bi_a, bi_b])
        >>> type(fused[0]).__name__, tuple(fused[0].fw.shape), tuple(fused[0].bw.shape)
        ('BidirectionalState', (3, 9), (3, 9))
    """
    return map_state(lambda *ts: torch.cat(ts, dim=-1), *_check_sources(states, False), check=False)


def sum_states(states: Sequence[Any]) -> Any:
    """Element-wise sum of each part; every source must have the same sizes.

    Args:
        states: one state per source (two or more), of one structure: a tuple of ``L``
            entries, ``LSTMState(c, h)`` of ``(B, H_k)`` tensors or one ``(B, H_k)`` tensor
            per layer, a :class:`~rnnfuse.state.BidirectionalState` of those for a
            bidirectional layer (or a ``BidirectionalRNN``'s pair of two stack states).

    Returns:
        One stack state of the same structure and sizes, each part ``(B, H_k)`` the sum of
        the sources' parts.

    Raises:
        TypeError: ``states`` is one stack state rather than a list of them.
        ValueError: fewer than two sources, sources of different structures, or of
            different sizes (the message points to :func:`concat_states` and
            :class:`StateBridge`).
    """
    return map_state(lambda *ts: torch.stack(ts).sum(0), *_check_sources(states, True), check=False)


def mean_states(states: Sequence[Any]) -> Any:
    """Element-wise mean of each part; every source must have the same sizes.

    Args:
        states: one state per source (two or more), of one structure: a tuple of ``L``
            entries, ``LSTMState(c, h)`` of ``(B, H_k)`` tensors or one ``(B, H_k)`` tensor
            per layer, a :class:`~rnnfuse.state.BidirectionalState` of those for a
            bidirectional layer (or a ``BidirectionalRNN``'s pair of two stack states).

    Returns:
        One stack state of the same structure and sizes, each part ``(B, H_k)`` the mean of
        the sources' parts.

    Raises:
        TypeError: ``states`` is one stack state rather than a list of them.
        ValueError: fewer than two sources, sources of different structures, or of
            different sizes.

    Example:
        >>> import torch
        >>> a, b = (torch.zeros(2, 3),), (torch.ones(2, 3),)
        >>> mean_states([a, b])[0]
        tensor([[0.5000, 0.5000, 0.5000],
                [0.5000, 0.5000, 0.5000]])
    """
    return map_state(
        lambda *ts: torch.stack(ts).mean(0), *_check_sources(states, True), check=False
    )


def max_states(states: Sequence[Any]) -> Any:
    """Element-wise maximum of each part; every source must have the same sizes.

    Args:
        states: one state per source (two or more), of one structure: a tuple of ``L``
            entries, ``LSTMState(c, h)`` of ``(B, H_k)`` tensors or one ``(B, H_k)`` tensor
            per layer, a :class:`~rnnfuse.state.BidirectionalState` of those for a
            bidirectional layer (or a ``BidirectionalRNN``'s pair of two stack states).

    Returns:
        One stack state of the same structure and sizes, each part ``(B, H_k)`` the
        element-wise maximum of the sources' parts.

    Raises:
        TypeError: ``states`` is one stack state rather than a list of them.
        ValueError: fewer than two sources, sources of different structures, or of
            different sizes (the message points to :func:`concat_states` and
            :class:`StateBridge`).
    """
    return map_state(
        lambda *ts: torch.stack(ts).amax(0), *_check_sources(states, True), check=False
    )


FUSION_FUNCTIONS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "concat": concat_states,
    "sum": sum_states,
    "mean": mean_states,
    "max": max_states,
}


def concat_outputs(outputs: Sequence[Tensor], lengths: Any = None) -> Tensor:
    """Join encoder outputs ``(B, T, H_k)`` on the feature axis.

    Args:
        outputs: two or more encoders' outputs, ``(B, T, H_k)`` each, of one batch, time,
            dtype and device.
        lengths: ``None``, one ``(B,)`` tensor for all sources, or one per source; each
            source's steps past its length are zeroed so padding never leaks into the result.

    Returns:
        ``(B, T, H_1 + ... + H_n)``.

    Raises:
        ValueError: fewer than two outputs, an output that is not ``(B, T, H)``, outputs of
            different batch, time, dtype or device, or ``lengths`` of the wrong count or size.

    Example:
        >>> import torch
        >>> out = concat_outputs([torch.ones(2, 4, 3), torch.ones(2, 4, 5)], torch.tensor([4, 1]))
        >>> tuple(out.shape), out[1, 1:].abs().sum().item()
        ((2, 4, 8), 0.0)
    """
    if isinstance(outputs, Tensor) or not isinstance(outputs, Sequence) or len(outputs) < 2:
        raise ValueError("outputs: expected a list of 2 or more tensors (B, T, H_k)")
    first = outputs[0]
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor) or out.dim() != 3:
            raise ValueError(f"outputs[{i}]: expected a tensor (B, T, H), got {describe(out)}")
        if out.shape[:2] != first.shape[:2]:
            raise ValueError(
                f"outputs[{i}]: expected batch and time {list(first.shape[:2])} like outputs[0], "
                f"got {list(out.shape[:2])}"
            )
        if out.dtype != first.dtype or out.device != first.device:
            raise ValueError(
                f"outputs[{i}]: dtype/device {out.dtype}/{out.device} differ from outputs[0]"
            )
    if lengths is None:
        return torch.cat(list(outputs), dim=-1)
    per_source = (
        list(lengths)
        if isinstance(lengths, (list, tuple)) and _is_nested(lengths)
        else [lengths] * len(outputs)
    )
    if len(per_source) != len(outputs):
        raise ValueError(
            f"lengths: expected one entry per output ({len(outputs)}), got {len(per_source)}"
        )
    masked = []
    for out, lens in zip(outputs, per_source, strict=True):
        lens = check_lengths(lens, out.shape[0], out.shape[1], out.device)
        if lens is not None:
            steps = torch.arange(out.shape[1], device=out.device)
            out = out * (steps.unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1).to(out.dtype)
        masked.append(out)
    return torch.cat(masked, dim=-1)


def _is_nested(lengths: Sequence[Any]) -> bool:
    return len(lengths) > 0 and all(
        isinstance(v, (Tensor, list, tuple)) or v is None for v in lengths
    )


# ------------------------------------------------------------------------ learned fusion


def _joined_sizes(sizes: Any, name: str) -> Any:
    """Sizes per layer with each pair of directions (a
    :class:`~rnnfuse.state.BidirectionalState`) joined (fw|bw); what is not a sequence of
    sizes is returned as it is, for :func:`_layer_sizes` to say what is wrong."""
    if isinstance(sizes, LSTMState) or not isinstance(sizes, (tuple, list)) or not sizes:
        return sizes
    try:
        return join_directions(sizes)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _layer_sizes(sizes: Any, name: str) -> list[Any]:
    """Validate a per-layer size structure: each entry an int or an LSTMState of ints."""
    if isinstance(sizes, (int, LSTMState)) or not isinstance(sizes, Sequence) or not sizes:
        raise TypeError(
            f"{name}: expected one entry per layer, each an int (GRU/RNN) or LSTMState(c, h) "
            f"of ints, got {sizes!r}"
        )
    for k, entry in enumerate(sizes):
        if not all(
            isinstance(p, int) and not isinstance(p, bool) and p > 0
            for p in layer_parts(entry).values()
        ):
            raise ValueError(
                f"{name}[{k}]: expected a positive int or LSTMState of positive ints, got {entry!r}"
            )
    return list(sizes)


def _check_num_sources(num_sources: int) -> int:
    if isinstance(num_sources, bool) or not isinstance(num_sources, int) or num_sources < 2:
        raise ValueError(f"num_sources: expected an int >= 2, got {num_sources!r}")
    return num_sources


def _check_against(module: str, states: list[Any], sizes: list[Any]) -> None:
    """Raise ValueError if ``states`` do not have the sizes the module was built for."""
    for i, state in enumerate(states):
        got = state_sizes(state) if isinstance(state, (tuple, list)) else None
        if got is None or list(got) != sizes:
            raise ValueError(
                f"{module}: states[{i}] has sizes {got}, expected {tuple(sizes)} (as built)"
            )


def _check_built(module: str, states: Any, num_sources: int, sizes: list[Any]) -> list[Any]:
    """The checks of a learned fusion: one state per source it was built for (each source's
    directions joined), each of one structure with the sizes it was built for."""
    states = [join_directions(state) for state in _source_list(states, num_sources)]
    _check_same_structure(states, True)
    if len(states) != num_sources:
        raise ValueError(
            f"{module}: expected {num_sources} states (num_sources={num_sources}, as "
            f"built), got {len(states)}"
        )
    _check_against(module, states, sizes)
    return states


class StateBridge(nn.Module):
    """A linear map per layer and state part to the sizes a decoder needs (OpenNMT's bridge).

    Given several sources, their states are first concatenated per part.  ``input_sizes``
    describes that (concatenated) state, ``output_sizes`` the decoder's; both per layer, an
    ``LSTMState(c, h)`` of ints for an LSTM layer, an int otherwise (see
    :func:`rnnfuse.state.state_sizes`).  ``activation`` is ``None``, ``"tanh"`` or ``"relu"``.

    A source with pairs of directions (``StackedRNN(..., bidirectional=[True, False])`` gives a
    :class:`~rnnfuse.state.BidirectionalState` for layer 0; a ``BidirectionalRNN`` one of two
    stacks) has them joined per part first (fw|bw, :func:`rnnfuse.state.join_directions`);
    ``input_sizes`` may be given joined or in that structure (``encoder.state_sizes``).

    >>> import torch
    >>> from rnnfuse import LSTMState
    >>> bridge = StateBridge([LSTMState(40, 40)], [LSTMState(16, 16)])
    >>> s = (LSTMState(torch.zeros(2, 20), torch.zeros(2, 20)),)
    >>> bridge([s, s])[0].h.shape
    torch.Size([2, 16])
    """

    def __init__(
        self,
        input_sizes: Sequence[Any],
        output_sizes: Sequence[Any],
        *,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.input_sizes = _layer_sizes(_joined_sizes(input_sizes, "input_sizes"), "input_sizes")
        self.output_sizes = _layer_sizes(output_sizes, "output_sizes")
        if len(self.input_sizes) != len(self.output_sizes):
            raise ValueError(
                f"output_sizes: expected {len(self.input_sizes)} layers like input_sizes, got "
                f"{len(self.output_sizes)}"
            )
        if activation not in (None, "tanh", "relu"):
            raise ValueError(f"activation: expected None, 'tanh' or 'relu', got {activation!r}")
        self.activation = activation
        self.maps = nn.ModuleList()
        for k, (src, dst) in enumerate(zip(self.input_sizes, self.output_sizes, strict=True)):
            if isinstance(src, LSTMState) != isinstance(dst, LSTMState):
                raise ValueError(
                    f"output_sizes[{k}]: layer {k} is "
                    f"{'an LSTM' if isinstance(src, LSTMState) else 'a GRU/RNN'} state in "
                    f"input_sizes but {dst!r} in output_sizes; the kinds must match"
                )
            out = layer_parts(dst)
            self.maps.append(
                nn.ModuleDict(
                    {part: nn.Linear(n, out[part]) for part, n in layer_parts(src).items()}
                )
            )

    def forward(self, states: Sequence[Any]) -> Any:
        """Map a stack state (or several, concatenated first) to the decoder's sizes.

        Args:
            states: one source's state (a stack state, or a ``BidirectionalRNN``'s
                :class:`~rnnfuse.state.BidirectionalState`), or a list of them (concatenated
                per part first); each source's ``BidirectionalState`` s are joined first
                (fw|bw).

        Returns:
            A stack state with ``output_sizes``: per layer ``LSTMState(c, h)`` of ``(B, H_k)``
            tensors or one ``(B, H_k)`` tensor.

        Raises:
            TypeError: ``states`` is no state or list of states.
            ValueError: the (joined) state's sizes are not the ``input_sizes`` it was built
                for; a plain tuple stands where a pair of directions belongs.
        """
        sources = [join_directions(s) for s in _bridge_sources(states)]
        state = sources[0] if len(sources) == 1 else concat_states(sources)
        _check_against("StateBridge", [state], self.input_sizes)
        act = {None: lambda t: t, "tanh": torch.tanh, "relu": torch.relu}[self.activation]
        return tuple(
            layer_from_parts({part: act(maps[part](t)) for part, t in layer_parts(layer).items()})
            for layer, maps in zip(state, cast("Sequence[nn.ModuleDict]", self.maps), strict=True)
        )


def _bridge_sources(states: Any) -> list[Any]:
    """The sources given to a bridge, by type: a ``BidirectionalState`` of two stacks is one
    source; a sequence whose entries are layer entries (layer states, a bidirectional layer's
    ``BidirectionalState``) is one stack state; any other sequence is a sequence of sources."""
    if isinstance(states, BidirectionalState):
        return [states]
    if not isinstance(states, (tuple, list)) or isinstance(states, LSTMState):
        raise TypeError(
            f"states: expected a stack state or a list of them, got {structure_str(states)}"
        )
    if not states:
        raise ValueError("states: expected a stack state or a non-empty list of them, got []")
    if any(_is_layer_entry(e) for e in states):
        return [states]
    return list(states)


class ZophKnightFusion(nn.Module):
    """Zoph & Knight (2016) *basic* multi-source combination, per layer.

    ``h = tanh(W [h_1; ...; h_n] + b)`` and, for LSTM layers, ``c = c_1 + ... + c_n``.
    Every source has the per-layer sizes ``sizes`` (see :class:`StateBridge`), and so has
    the result.

    Args:
        num_sources: how many encoders' states it fuses (2 or more).
        sizes: each source's per-layer sizes, as ``encoder.state_sizes`` gives them: per
            layer an ``LSTMState(c, h)`` of ints or an int (a ``BidirectionalState`` is
            joined).

    Raises:
        ValueError: ``num_sources`` is not an int of 2 or more, or ``sizes`` is malformed.

    Example:
        >>> import torch
        >>> from rnnfuse import StackedRNN
        >>> local, glob = StackedRNN(6, [20, 20]), StackedRNN(6, [20, 20])
        >>> fusion = ZophKnightFusion(2, local.state_sizes)
        >>> x = torch.randn(3, 5, 6)
        >>> fused = fusion([local(x)[1], glob(x)[1]])
        >>> [tuple(layer.h.shape) for layer in fused]
        [(3, 20), (3, 20)]
    """

    def __init__(self, num_sources: int, sizes: Sequence[Any]) -> None:
        super().__init__()
        self.num_sources = _check_num_sources(num_sources)
        self.sizes = _layer_sizes(_joined_sizes(sizes, "sizes"), "sizes")
        n = num_sources
        self.combine = nn.ModuleList(
            nn.Linear(n * state_output(entry), state_output(entry)) for entry in self.sizes
        )

    def forward(self, states: Sequence[Any]) -> Any:
        """Fuse one state per source into one state of the sizes it was built for.

        Args:
            states: ``num_sources`` stack states, each with the per-layer ``sizes`` given at
                construction (a bidirectional source's directions are joined first, fw|bw).

        Returns:
            One stack state with those sizes: per layer ``LSTMState(c, h)`` of ``(B, H_k)``
                tensors for an LSTM layer, one ``(B, H_k)`` tensor otherwise.

        Raises:
            TypeError: ``states`` is one stack state rather than a list of them.
            ValueError: another number of sources, or states of another structure or sizes.
        """
        states = _check_built("ZophKnightFusion", states, self.num_sources, self.sizes)
        fused: list[Any] = []
        for k, linear in enumerate(self.combine):
            layers = [s[k] for s in states]
            h = torch.tanh(linear(torch.cat([state_output(layer) for layer in layers], dim=-1)))
            if isinstance(layers[0], LSTMState):
                fused.append(LSTMState(torch.stack([layer.c for layer in layers]).sum(0), h))
            else:
                fused.append(h)
        return tuple(fused)


class ChildSumFusion(nn.Module):
    """Zoph & Knight (2016) *child-sum* combination of LSTM states, per layer.

    ``i, o, u`` from ``W_1 h_1 + ... + W_n h_n + b``; one forget gate per source
    ``f_k = sigmoid(U_k h_k + b_k)``; ``c = i*u + sum_k f_k*c_k``; ``h = o*tanh(c)``.
    Every layer must be an LSTM layer with ``c`` and ``h`` of one size.

    Args:
        num_sources: how many encoders' states it fuses (2 or more).
        sizes: each source's per-layer sizes, as ``encoder.state_sizes`` gives them: per
            layer an ``LSTMState(c, h)`` of ints or an int (a ``BidirectionalState`` is
            joined).

    Raises:
        ValueError: ``num_sources`` is not an int of 2 or more, or a layer is not an LSTM
            layer with ``c`` and ``h`` of one size.
    """

    def __init__(self, num_sources: int, sizes: Sequence[Any]) -> None:
        super().__init__()
        self.num_sources = _check_num_sources(num_sources)
        self.sizes = _layer_sizes(_joined_sizes(sizes, "sizes"), "sizes")
        for k, entry in enumerate(self.sizes):
            if not isinstance(entry, LSTMState) or entry.c != entry.h:
                raise ValueError(
                    f"sizes[{k}]: ChildSumFusion gates LSTM cell states and needs "
                    f"LSTMState(c=H, h=H), got {entry!r}; use ZophKnightFusion or GatedFusion "
                    "for GRU/RNN or projected layers"
                )
        self.iou = nn.ModuleList(
            nn.ModuleList(nn.Linear(e.h, 3 * e.h, bias=(j == 0)) for j in range(num_sources))
            for e in self.sizes
        )
        self.forget = nn.ModuleList(
            nn.ModuleList(nn.Linear(e.h, e.h) for _ in range(num_sources)) for e in self.sizes
        )

    def forward(self, states: Sequence[Any]) -> Any:
        """Fuse one state per source into one state of the sizes it was built for.

        Args:
            states: ``num_sources`` stack states, each with the per-layer ``sizes`` given at
                construction (a bidirectional source's directions are joined first, fw|bw).

        Returns:
            One stack state with those sizes: per layer ``LSTMState(c, h)`` of ``(B, H_k)`` tensors.

        Raises:
            TypeError: ``states`` is one stack state rather than a list of them.
            ValueError: another number of sources, or states of another structure or sizes.
        """
        states = _check_built("ChildSumFusion", states, self.num_sources, self.sizes)
        fused = []
        for k in range(len(self.sizes)):
            layers = [s[k] for s in states]
            iou = cast(
                Tensor,
                sum(
                    w(layer.h)
                    for w, layer in zip(
                        cast("Sequence[nn.Linear]", self.iou[k]), layers, strict=True
                    )
                ),
            )
            i, o, u = iou.chunk(3, dim=-1)
            c = torch.sigmoid(i) * torch.tanh(u)
            for f, layer in zip(cast("Sequence[nn.Linear]", self.forget[k]), layers, strict=True):
                c = c + torch.sigmoid(f(layer.h)) * layer.c
            fused.append(LSTMState(c, torch.sigmoid(o) * torch.tanh(c)))
        return tuple(fused)


class GatedFusion(nn.Module):
    """A learned, per-feature softmax gate between sources, per layer and state part.

    ``g = softmax_k(W [h_1; ...; h_n] + b)`` (over the n sources, per feature), then
    ``part = sum_k g_k * part_k`` for ``h`` and, with its own gate, for ``c``.

    Args:
        num_sources: how many encoders' states it fuses (2 or more).
        sizes: each source's per-layer sizes, as ``encoder.state_sizes`` gives them: per
            layer an ``LSTMState(c, h)`` of ints or an int (a ``BidirectionalState`` is
            joined).

    Raises:
        ValueError: ``num_sources`` is not an int of 2 or more, or ``sizes`` is malformed.
    """

    def __init__(self, num_sources: int, sizes: Sequence[Any]) -> None:
        super().__init__()
        self.num_sources = _check_num_sources(num_sources)
        self.sizes = _layer_sizes(_joined_sizes(sizes, "sizes"), "sizes")
        n = num_sources
        self.gates = nn.ModuleList(
            nn.ModuleDict(
                {
                    part: nn.Linear(n * state_output(e), n * size)
                    for part, size in layer_parts(e).items()
                }
            )
            for e in self.sizes
        )

    def forward(self, states: Sequence[Any]) -> Any:
        """Fuse one state per source into one state of the sizes it was built for.

        Args:
            states: ``num_sources`` stack states, each with the per-layer ``sizes`` given at
                construction (a bidirectional source's directions are joined first, fw|bw).

        Returns:
            One stack state with those sizes: per layer ``LSTMState(c, h)`` of ``(B, H_k)``
                tensors for an LSTM layer, one ``(B, H_k)`` tensor otherwise.

        Raises:
            TypeError: ``states`` is one stack state rather than a list of them.
            ValueError: another number of sources, or states of another structure or sizes.
        """
        states = _check_built("GatedFusion", states, self.num_sources, self.sizes)
        fused = []
        for k, gates in enumerate(cast("Sequence[nn.ModuleDict]", self.gates)):
            layers = [layer_parts(s[k]) for s in states]
            context = torch.cat([layer["h"] for layer in layers], dim=-1)
            mixed = {
                part: _gated_mix(cast(nn.Linear, gate), context, [layer[part] for layer in layers])
                for part, gate in gates.items()
            }
            fused.append(layer_from_parts(mixed))
        return tuple(fused)


def _gated_mix(gate: nn.Linear, context: Tensor, values: list[Tensor]) -> Tensor:
    """``sum_k softmax_k(gate(context))_k * values_k``, the softmax taken over the sources."""
    logits = gate(context).view(context.shape[0], len(values), -1)
    return (torch.softmax(logits, dim=1) * torch.stack(values, dim=1)).sum(1)
