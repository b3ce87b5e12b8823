"""StackedRNN: layers of possibly different sizes and cell kinds, each owning its weights.

Shapes, in this module and throughout rnnfuse's docstrings (the legend of PyTorch's
``nn.LSTM``):

- ``B``: batch size;
- ``T``: time steps (the longest sequence; ``lengths`` gives each one's own);
- ``F``: input features (``input_size``);
- ``H``: hidden size, a layer's (``H_k`` for layer ``k``, ``H_top`` for the top layer);
- ``L``: layers;
- ``D``: directions, 2 for a bidirectional layer, else 1.

``x`` is ``(B, T, F)``, or ``(T, B, F)`` with ``batch_first=False`` (TF's ``time_major``);
``lengths`` is ``(B,)``; the outputs are ``(B, T, D * H_top)`` (``merge_mode="concat"``); an
LSTM layer's state is ``LSTMState(c, h)`` of two ``(B, H_k)`` tensors, a GRU or RNN layer's one
``(B, H_k)`` tensor, and a stack's state a tuple of ``L`` layer states.

>>> import torch
>>> from rnnfuse import StackedRNN
>>> enc = StackedRNN(6, [20, 10], cell="lstm")
>>> y, state = enc(torch.randn(3, 5, 6), lengths=[5, 2, 0])
>>> y.shape, [tuple(s.h.shape) for s in state]
(torch.Size([3, 5, 10]), [(3, 20), (3, 10)])
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn

from ._checks import check_lengths, check_sequence_input
from .cells import RecurrentCell, make_cell
from .convert.torch import cells_from_torch, torch_from_cells
from .kernels import run_layer, run_stack
from .state import BidirectionalState, assert_same_structure, structure_str

__all__ = ["StackedRNN"]


class StackedRNN(nn.Module):
    """A multi-layer recurrent network with one cell (its own weights) per layer.

    Args:
        input_size: features of the input.
        hidden_sizes: one size per layer (an int means one layer).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``; ``cell_options`` go to every layer's cell
            (e.g. ``forget_bias=1.0``, ``peepholes=True``, ``reset_after=False``).
        batch_first: ``x`` is ``(B, T, F)`` if true, else ``(T, B, F)`` (TF's time_major).
        bidirectional: a bool for every layer, or one bool per layer (e.g. ``[True, False,
            False]``: GNMT's encoder).  A bidirectional layer runs a backward cell beside
            the forward one; layer k+1 reads layer k's fw|bw (PyTorch style); its state
            entry is a :class:`~rnnfuse.state.BidirectionalState` ``(fw, bw)``.
            ``self.bidirectional`` is the per-layer tuple.
        merge_mode: how a bidirectional layer joins its directions' outputs (Keras'
            ``Bidirectional(merge_mode=...)``): ``"concat"`` (fw|bw, the default), ``"sum"``,
            ``"ave"`` (``(fw + bw) / 2``) or ``"mul"``; the next layer reads the merged
            outputs (H features for all but concat).  A sequence gives one mode per layer
            (``"concat"`` for unidirectional layers).
        dropout: dropout probability on the outputs of every layer but the last.
        variational_dropout: use one dropout mask for all time steps of a sequence.
        residual: add each layer's input to its output: ``True`` for every layer after the
            first (the first changes the feature space), or one bool per layer (layer 0
            too: its input's padding is not added, the outputs stay zero past each length);
            the layers' input and output sizes must match.  ``self.residual`` is the
            per-layer tuple.

    ``forward(x, lengths=None, initial_state=None) -> (outputs, state)``: see
    :meth:`forward` (shapes as in the module's legend).
    """

    def __init__(
        self,
        input_size: int,
        hidden_sizes: int | Sequence[int],
        cell: str = "lstm",
        *,
        batch_first: bool = True,
        bidirectional: bool | Sequence[bool] = False,
        dropout: float = 0.0,
        variational_dropout: bool = False,
        residual: bool | Sequence[bool] = False,
        merge_mode: str | Sequence[str] = "concat",
        **cell_options: Any,
    ) -> None:
        sizes = _as_sizes(hidden_sizes)
        directions = _per_layer("bidirectional", bidirectional, len(sizes))
        merges = _merge_modes(merge_mode, directions)
        fw, bw, in_size = [], [], input_size
        for size, both, merge in zip(sizes, directions, merges, strict=True):
            fw.append(make_cell(cell, in_size, size, **cell_options))
            bw.append(make_cell(cell, in_size, size, **cell_options) if both else None)
            in_size = fw[-1].output_size * (2 if both and merge == "concat" else 1)
        self._init_from_cells(
            fw,
            bw if any(directions) else None,
            batch_first=batch_first,
            dropout=dropout,
            variational_dropout=variational_dropout,
            residual=residual,
            merge_mode=merge_mode,
        )

    @classmethod
    def from_cells(
        cls,
        cells: Sequence[RecurrentCell],
        *,
        backward_cells: Sequence[RecurrentCell | None] | None = None,
        batch_first: bool = True,
        dropout: float = 0.0,
        variational_dropout: bool = False,
        residual: bool | Sequence[bool] = False,
        merge_mode: str | Sequence[str] = "concat",
    ) -> StackedRNN:
        """A stack from ready cells, e.g. an LSTM → GRU → RNN stack.

        Every layer needs its own cell object; ``backward_cells`` makes it bidirectional
        (``None`` entries leave those layers unidirectional: a mixed-direction stack);
        ``merge_mode`` as in the constructor.

        >>> from rnnfuse import LSTMCell, GRUCell, RNNCell
        >>> s = StackedRNN.from_cells([LSTMCell(6, 8), GRUCell(8, 4), RNNCell(4, 4)])
        >>> [c.kind for c in s.layers]
        ['lstm', 'gru', 'rnn']
        """
        stack = cls.__new__(cls)
        stack._init_from_cells(
            list(cells),
            None if backward_cells is None else list(backward_cells),
            batch_first=batch_first,
            dropout=dropout,
            variational_dropout=variational_dropout,
            residual=residual,
            merge_mode=merge_mode,
        )
        return stack

    @classmethod
    def from_torch(cls, module: nn.Module) -> StackedRNN:
        """A stack giving the same numbers as ``torch.nn.LSTM``, ``GRU`` or ``RNN``.

        >>> import torch
        >>> ref = torch.nn.LSTM(6, 8, num_layers=2, batch_first=True)
        >>> stack = StackedRNN.from_torch(ref)
        >>> x = torch.randn(3, 5, 6)
        >>> torch.allclose(stack(x)[0], ref(x)[0], atol=1e-6)
        True
        """
        found = cells_from_torch(module)  # each cell is already on the module's device and dtype
        return cls.from_cells(
            found.cells,
            backward_cells=found.backward_cells,
            batch_first=found.batch_first,
            dropout=found.dropout,
        )

    def to_torch(self) -> nn.Module:
        """The equivalent ``torch.nn.LSTM``/``GRU``/``RNN``; ``ValueError`` if none exists."""
        if any(m != "concat" for m in self.merge_modes):
            raise ValueError(
                f"stack: not expressible as one torch.nn RNN module: PyTorch's "
                f"bidirectional RNNs concatenate their directions; merge_mode="
                f"{list(self.merge_modes)}"
            )
        if len(set(self.bidirectional)) > 1:
            raise ValueError(
                f"stack: not expressible as one torch.nn RNN module: PyTorch's bidirectional "
                f"RNNs make every layer bidirectional; bidirectional={self.bidirectional}"
            )
        return torch_from_cells(
            self.layers,
            self.backward_layers if any(self.bidirectional) else None,
            batch_first=self.batch_first,
            dropout=self.dropout,
            residual=any(self.residual),
            variational_dropout=self.variational_dropout,
        )

    def _init_from_cells(
        self,
        cells: list[RecurrentCell],
        backward_cells: list[RecurrentCell | None] | None,
        *,
        batch_first: bool,
        dropout: float,
        variational_dropout: bool,
        residual: bool | Sequence[bool],
        merge_mode: str | Sequence[str] = "concat",
    ) -> None:
        nn.Module.__init__(self)
        _check_cells(cells, backward_cells)
        directions = (
            tuple(c is not None for c in backward_cells)
            if backward_cells
            else (False,) * len(cells)
        )
        #: per layer: how a bidirectional layer joins its directions ("concat" when unidirectional)
        self.merge_modes = _merge_modes(merge_mode, directions)
        _check_sizes(cells, backward_cells, self.merge_modes)
        _check_dropout(dropout)
        if dropout and len(cells) == 1:  # as torch.nn.LSTM: a warning, the stack still works
            warnings.warn(
                f"dropout={dropout} has no effect on a one-layer stack: dropout acts on the "
                "outputs of every layer but the last",
                UserWarning,
                stacklevel=3,
            )
        self.batch_first = bool(batch_first)
        #: per layer: whether it is bidirectional
        self.bidirectional: tuple[bool, ...] = directions
        self.dropout = float(dropout)
        self.variational_dropout = bool(variational_dropout)
        residual_layers = _per_layer("residual", residual, len(cells))
        if isinstance(residual, bool):  # True: every layer after the first
            residual_layers = (False,) + residual_layers[1:]
        #: per layer: whether its input is added to its output
        self.residual: tuple[bool, ...] = residual_layers
        self.layers: Sequence[RecurrentCell] = cast("Sequence[RecurrentCell]", nn.ModuleList(cells))
        # backward cells of the bidirectional layers only, in layer order
        self.backward_layers: Sequence[RecurrentCell] = cast(
            "Sequence[RecurrentCell]",
            nn.ModuleList([c for c in backward_cells or [] if c is not None]),
        )
        self._backward_index = {
            k: i for i, k in enumerate(k for k, d in enumerate(directions) if d)
        }
        if any(residual_layers):
            _check_residual(
                self.layers, [self._width(k) for k in range(len(cells))], residual_layers
            )

    def _width(self, k: int) -> int:
        """Features of layer ``k``'s outputs (both directions joined)."""
        both = self.bidirectional[k] and self.merge_modes[k] == "concat"
        return self.layers[k].output_size * (2 if both else 1)

    def backward_cell(self, k: int) -> RecurrentCell | None:
        """Layer ``k``'s backward cell, or ``None`` for a unidirectional layer."""
        i = self._backward_index.get(k)
        cell: Any = None if i is None else self.backward_layers[i]
        return cell

    # ------------------------------------------------------------------ sizes
    @property
    def input_size(self) -> int:
        return self.layers[0].input_size

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(c.hidden_size for c in self.layers)

    @property
    def output_size(self) -> int:
        """Features of the outputs: the top layer's output size, doubled if bidirectional
        with ``merge_mode="concat"``."""
        return self._width(self.num_layers - 1)

    @property
    def state_sizes(self) -> tuple[Any, ...]:
        """Sizes of the state's parts, in its structure: one entry per layer, an
        ``LSTMState`` of ints (LSTM) or an int (GRU/RNN), a
        :class:`~rnnfuse.state.BidirectionalState` of two of them for a bidirectional layer.

        >>> StackedRNN(3, [4, 5], "gru", bidirectional=[True, False]).state_sizes
        (BidirectionalState(fw=4, bw=4), 5)
        """
        fw = tuple(c.state_size for c in self.layers)
        return self._structure(fw, tuple(c.state_size for c in self.backward_layers))

    def _structure(self, fw: tuple, bw: tuple) -> tuple[Any, ...]:
        """The state structure from the forward layers' and the backward cells' parts."""
        return tuple(
            BidirectionalState(f, bw[self._backward_index[k]]) if k in self._backward_index else f
            for k, f in enumerate(fw)
        )

    def extra_repr(self) -> str:
        parts = [f"batch_first={self.batch_first}"]
        if any(self.bidirectional):
            parts.append(f"bidirectional={self.bidirectional}")
        if self.dropout:
            parts.append(f"dropout={self.dropout}, variational={self.variational_dropout}")
        if any(self.residual):
            parts.append(f"residual={self.residual}")
        if any(m != "concat" for m in self.merge_modes):
            parts.append(f"merge_mode={self.merge_modes}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ state
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[Any, ...]:
        """The zero state, in the structure of :attr:`state_sizes`: one entry per layer, a
        :class:`~rnnfuse.state.BidirectionalState` for a bidirectional layer."""
        fw = tuple(c.initial_state(batch_size, device, dtype) for c in self.layers)
        return self._structure(
            fw, tuple(c.initial_state(batch_size, device, dtype) for c in self.backward_layers)
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self, x: Tensor, lengths: Any = None, initial_state: Any = None
    ) -> tuple[Tensor, tuple[Any, ...]]:
        """Run the stack over a batch of sequences, as TF1's ``dynamic_rnn``.

        Args:
            x: the input, ``(B, T, F)``, or ``(T, B, F)`` when ``batch_first=False``; its dtype
                is the parameters'.
            lengths: each sequence's length, ``(B,)`` integers in ``[0, T]``, in any order (a
                tensor, a list or ``None`` for all ``T``). Steps past a length are not read:
                the input's padding may hold anything, NaN included.
            initial_state: the state to start from, in the structure of
                :meth:`initial_state` (one entry per layer, a
                :class:`~rnnfuse.state.BidirectionalState` ``(fw, bw)`` for a bidirectional
                layer); ``None`` starts from zeros.

        Returns:
            ``(outputs, state)``. ``outputs`` is ``(B, T, D * H_top)`` (``(T, B, ...)`` when
            ``batch_first=False``; ``H_top`` alone for a ``merge_mode`` other than
            ``"concat"``), the top layer's outputs, exactly zero past each length. ``state``
            holds each layer's state at its sequence's last step (the initial state for a
            length of 0), a tuple with one entry per layer: an ``LSTMState(c, h)`` of
            ``(B, H_k)`` tensors (``h`` ``(B, P)`` with a projection) or one ``(B, H_k)``
            tensor, a :class:`~rnnfuse.state.BidirectionalState` ``(fw, bw)`` of two of those
            for a bidirectional layer.

        Raises:
            TypeError: ``x`` is not a floating-point tensor of the parameters' dtype,
                ``lengths`` holds no integers, or ``initial_state`` is no tuple.
            ValueError: ``x`` has the wrong rank or feature size, ``lengths`` the wrong
                size or values outside ``[0, T]``, or ``initial_state`` another structure or
                shape than :meth:`initial_state`.

        Example:
            >>> import torch
            >>> stack = StackedRNN(6, [20, 10], cell="gru")
            >>> outputs, state = stack(torch.randn(3, 5, 6), torch.tensor([5, 2, 4]))
            >>> tuple(outputs.shape), [tuple(layer.shape) for layer in state]
            ((3, 5, 10), [(3, 20), (3, 10)])
            >>> bool(outputs[1, 2:].eq(0).all())  # sequence 1 ends after 2 steps
            True
            >>> gnmt = StackedRNN(6, [4, 5], "lstm", bidirectional=[True, False])
            >>> _, state = gnmt(torch.randn(3, 5, 6), torch.tensor([5, 2, 4]))
            >>> type(state[0]).__name__, tuple(state[0].bw.h.shape), tuple(state[1].c.shape)
            ('BidirectionalState', (3, 4), (3, 5))
        """
        x = check_sequence_input(x, self.input_size, self.batch_first)
        _check_dtype(x, self.layers[0].weight_ih.dtype)
        lens = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        if self._chains_plainly():  # kernels.run_stack chooses how the layers run
            start = None if initial_state is None else self._check_initial_state(initial_state, x)
            out, finals = run_stack(self.layers, x, lens, start)
            return (out if self.batch_first else out.transpose(0, 1)), finals
        fw_start, bw_start = self._split_state(self._check_initial_state(initial_state, x))
        fw_final, bw_final = [], []
        layer_in = x
        for k, cell in enumerate(self.layers):
            out, final = run_layer(cell, layer_in, lens, fw_start[k])
            fw_final.append(final)
            backward = self.backward_cell(k)
            if backward is not None:
                out_bw, final_bw = run_layer(backward, layer_in, lens, bw_start[k], True)
                bw_final.append(final_bw)
                out = _merge(out, out_bw, self.merge_modes[k])
            if self.residual[k]:  # the input's padding may hold anything: zero past each length
                out = out + (
                    layer_in if k > 0 or lens is None else _zero_past_lengths(layer_in, lens)
                )
            if k < self.num_layers - 1:
                out = self._dropout(out)
            layer_in = out
        outputs = layer_in if self.batch_first else layer_in.transpose(0, 1)
        return outputs, self._structure(tuple(fw_final), tuple(bw_final))

    def _chains_plainly(self) -> bool:
        """Whether each layer's output is the next one's input as it is: one direction,
        no residual connections, no dropout at work."""
        return not (
            any(self.bidirectional) or any(self.residual) or (self.training and self.dropout > 0.0)
        )

    def _split_state(self, state: tuple[Any, ...]) -> tuple[tuple, dict[int, Any]]:
        """``(forward part per layer, {layer: backward part})`` of a checked state."""
        fw = tuple(s.fw if isinstance(s, BidirectionalState) else s for s in state)
        return fw, {k: state[k].bw for k in self._backward_index}

    def _dropout(self, out: Tensor) -> Tensor:
        if not self.training or self.dropout == 0.0:
            return out
        if not self.variational_dropout:
            return nn.functional.dropout(out, self.dropout, training=True)
        keep = 1.0 - self.dropout
        if keep == 0.0:  # dropout=1.0 drops everything, as in PyTorch
            return out * 0.0
        mask = out.new_empty(out.shape[0], 1, out.shape[2]).bernoulli_(keep) / keep
        return out * mask

    def _check_initial_state(self, initial_state: Any, x: Tensor) -> Any:
        expected = self.initial_state(x.shape[0], x.device, x.dtype)
        if initial_state is None:
            return expected
        if not isinstance(initial_state, (tuple, list)):
            raise TypeError(
                f"initial_state: expected {structure_str(expected)}, got "
                f"{type(initial_state).__name__}"
            )
        try:
            assert_same_structure(
                expected, initial_state, names=("expected initial_state", "initial_state")
            )
        except ValueError as exc:  # one name in the first line, then both structures
            first, _, rest = str(exc).partition("\n")
            where = first.split(" differ ", 1)[-1]
            raise ValueError(
                f"initial_state: does not match the state for x (batch {x.shape[0]}); the states "
                f"differ {where}\n{rest}"
            ) from None
        return initial_state


MERGE_MODES = ("concat", "sum", "ave", "mul")


def _merge(fw: Tensor, bw: Tensor, mode: str) -> Tensor:
    """The two directions' outputs joined as Keras' ``Bidirectional(merge_mode=mode)``
    (past each length both are zero, so every mode gives zero there)."""
    if mode == "sum":
        return fw + bw
    if mode == "ave":
        return (fw + bw) / 2
    if mode == "mul":
        return fw * bw
    return torch.cat([fw, bw], dim=-1)


def _merge_modes(value: Any, directions: Sequence[bool]) -> tuple[str, ...]:
    """One merge mode per layer from one mode (for every bidirectional layer) or a sequence."""
    if isinstance(value, str):
        if value not in MERGE_MODES:
            raise ValueError(f"merge_mode: expected one of {list(MERGE_MODES)}, got {value!r}")
        return tuple(value if both else "concat" for both in directions)
    items: Any = value
    if not isinstance(items, Sequence) or len(items) != len(directions):
        raise TypeError(
            f"merge_mode: expected a mode or one mode per layer ({len(directions)}), got {value!r}"
        )
    for k, (mode, both) in enumerate(zip(items, directions, strict=True)):
        if mode not in MERGE_MODES:
            raise ValueError(f"merge_mode[{k}]: expected one of {list(MERGE_MODES)}, got {mode!r}")
        if mode != "concat" and not both:
            raise ValueError(
                f"merge_mode[{k}]: {mode!r} merges two directions, but layer {k} is "
                f"unidirectional (use 'concat' there)"
            )
    return tuple(items)


def _zero_past_lengths(x: Tensor, lengths: Tensor) -> Tensor:
    """``x`` (B, T, F) with zeros at the steps past each length (selected, not multiplied:
    a NaN there becomes zero too, and its gradient is zero)."""
    inside = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.to(
        x.device
    ).unsqueeze(1)
    return torch.where(inside.unsqueeze(2), x, x.new_zeros(()))


def _check_dtype(x: Tensor, dtype: torch.dtype) -> None:
    """``x`` must have the parameters' dtype (under autocast, torch casts for us)."""
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(
            f"x: expected dtype {dtype} (the stack's parameters), got {x.dtype}; "
            f"convert one of them, e.g. x.to({dtype}) or stack.to({x.dtype})"
        )


def _as_sizes(hidden_sizes: int | Sequence[int]) -> list[int]:
    if isinstance(hidden_sizes, int) and not isinstance(hidden_sizes, bool):
        return [hidden_sizes]
    if not isinstance(hidden_sizes, Sequence) or isinstance(hidden_sizes, str) or not hidden_sizes:
        raise TypeError(
            f"hidden_sizes: expected an int or a non-empty list of ints, got {hidden_sizes!r}"
        )
    return list(hidden_sizes)


def _check_dropout(dropout: float) -> None:
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, (int, float))
        or not 0.0 <= dropout <= 1.0
    ):
        raise ValueError(
            f"dropout: expected a probability in [0, 1] (as torch.nn.LSTM), got {dropout!r}"
        )


def _per_layer(name: str, value: Any, layers: int) -> tuple[bool, ...]:
    """A bool for every layer, or one bool per layer given as a sequence."""
    if isinstance(value, bool):
        return (value,) * layers
    items: Any = value
    if (
        not isinstance(items, Sequence)
        or isinstance(items, str)
        or len(items) != layers
        or not all(isinstance(v, bool) for v in items)
    ):
        raise TypeError(f"{name}: expected a bool or one bool per layer ({layers}), got {value!r}")
    return tuple(items)


def _check_cells(
    cells: Sequence[RecurrentCell], backward: Sequence[RecurrentCell | None] | None
) -> None:
    if not cells:
        raise ValueError("cells: expected at least one cell, got an empty list")
    named = [(f"cells[{i}]", c) for i, c in enumerate(cells)]
    if backward is not None:
        if len(backward) != len(cells):
            raise ValueError(
                f"backward_cells: expected one cell per layer ({len(cells)}), got {len(backward)} "
                f"(None marks a unidirectional layer)"
            )
        named += [(f"backward_cells[{i}]", c) for i, c in enumerate(backward) if c is not None]
    seen: dict[int, str] = {}
    for name, cell in named:
        if not isinstance(cell, RecurrentCell):
            raise TypeError(
                f"{name}: expected an rnnfuse cell (LSTMCell, GRUCell, RNNCell), got "
                f"{type(cell).__name__}"
            )
        if id(cell) in seen:
            raise ValueError(
                f"{seen[id(cell)]} and {name} are the same {type(cell).__name__} object: every "
                "layer needs its own cell and weights (the TF1 `MultiRNNCell([cell] * n)` trap). "
                "Build a fresh cell per layer, "
                f"e.g. [{type(cell).__name__}(...) for _ in range(n)]."
            )
        seen[id(cell)] = name


def _check_sizes(
    cells: Sequence[RecurrentCell],
    backward: Sequence[RecurrentCell | None] | None,
    merges: Sequence[str],
) -> None:
    """Each layer reads what the one below writes; both directions of a layer match."""
    both = [backward is not None and backward[k] is not None for k in range(len(cells))]
    for stack_cells, label in [(cells, "cells"), (backward or [], "backward_cells")]:
        for k in range(1, len(stack_cells)):
            layer = stack_cells[k]
            if layer is None:
                continue
            doubled = both[k - 1] and merges[k - 1] == "concat"
            expected = cells[k - 1].output_size * (2 if doubled else 1)
            if layer.input_size != expected:
                raise ValueError(
                    f"{label}[{k}].input_size: expected {expected} (the output size of layer "
                    f"{k - 1}{' times 2 directions' if doubled else ''}), got {layer.input_size}"
                )
    if backward is not None:
        for k, (f, b) in enumerate(zip(cells, backward, strict=True)):
            if b is None:
                continue
            if f.output_size != b.output_size or (k == 0 and f.input_size != b.input_size):
                raise ValueError(
                    f"backward_cells[{k}]: expected input {f.input_size} and output "
                    f"{f.output_size} like cells[{k}], got input {b.input_size} and "
                    f"output {b.output_size}"
                )


def _check_residual(
    layers: Sequence[RecurrentCell], widths: Sequence[int], residual: Sequence[bool]
) -> None:
    for k in range(len(layers)):
        if not residual[k]:
            continue
        out = widths[k]
        if layers[k].input_size != out:
            raise ValueError(
                f"residual: layer {k} reads {layers[k].input_size} features and writes {out}; a "
                "residual connection needs them equal (use equal sizes from layer 1 "
                "on, or residual=False)"
            )
