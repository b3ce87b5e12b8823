"""The TF1 facade's cells: ``BasicLSTMCell``, ``LSTMCell``, ``GRUCell``, ``BasicRNNCell``,
``MultiRNNCell`` and ``variable_scope``; each builds its rnnfuse cell at the first call.

``state_is_tuple=False`` (``BasicLSTMCell``, ``LSTMCell``, ``MultiRNNCell``) gives states as
TF concatenates them: an LSTM's ``[c, h]`` (``[c, m]`` with a projection) in one tensor, and a
``MultiRNNCell``'s layers side by side, ``[B, sum of the layers' state sizes]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from ..cells import RecurrentCell
from ..cells.activations import ACTIVATIONS, check_activation
from ..state import LSTMState as LSTMStateTuple
from ._layers import initial_values, layer_arrays, load_layer, make_cell
from .names import TFLayer, variable_shapes
from .wrappers import core_cell, is_wrapper

__all__ = [
    "BasicLSTMCell",
    "LSTMCell",
    "GRUCell",
    "BasicRNNCell",
    "MultiRNNCell",
    "variable_scope",
    "VariableScope",
]

_SCOPE: ContextVar[tuple[str, ...]] = ContextVar("rnnfuse_tf1_scope", default=())


class VariableScope(NamedTuple):
    name: str


@contextlib.contextmanager
def variable_scope(name_or_scope: str) -> Iterator[VariableScope]:
    """Prefix the scope of the ``dynamic_rnn`` calls inside, like ``tf.variable_scope``."""
    if not isinstance(name_or_scope, str) or not name_or_scope.strip("/"):
        raise ValueError(f"name_or_scope: expected a non-empty scope name, got {name_or_scope!r}")
    token = _SCOPE.set(_SCOPE.get() + (name_or_scope.strip("/"),))
    try:
        yield VariableScope("/".join(_SCOPE.get()))
    finally:
        _SCOPE.reset(token)


def _full_scope(scope: str | None, default: str) -> str:
    return "/".join([*_SCOPE.get(), (scope or default).strip("/")])


class _Cell(nn.Module):
    """One layer: TF's options, and (once built) the rnnfuse cell in ``self.cell``."""

    tf_name = ""
    cell_type = ""

    def __init__(self, num_units: int, dtype: Any = None) -> None:
        super().__init__()
        if isinstance(num_units, bool) or not isinstance(num_units, int) or num_units <= 0:
            raise ValueError(f"num_units: expected a positive int, got {num_units!r}")
        self.num_units = num_units
        self.cell_dtype = _as_dtype(dtype)
        self.cell: RecurrentCell | None = None
        self.tf_scope: str | None = None

    num_proj: int | None = None
    use_peepholes = False
    state_is_tuple = True

    @property
    def built(self) -> bool:
        return self.cell is not None

    @property
    def built_cell(self) -> RecurrentCell:
        """The rnnfuse cell; ``ValueError`` while not built."""
        if self.cell is None:
            raise ValueError(f"{self!r}: not built yet")
        return self.cell

    @property
    def output_size(self) -> int:
        return self.num_proj or self.num_units

    @property
    def state_size(self) -> Any:
        return self.num_units

    def _layer(self, input_size: int) -> TFLayer:
        return TFLayer(
            self.tf_name,
            self.cell_type,
            input_size,
            self.num_units,
            self.num_proj,
            self.use_peepholes,
            {},
        )

    def _options(self) -> dict[str, Any]:
        return {}

    def build(self, input_size: int, dtype: torch.dtype | None = None, device: Any = None) -> None:
        """Create the weights for ``input_size`` features, with TF's initialisers."""
        if self.cell is not None:
            if self.cell.input_size != input_size:
                raise ValueError(
                    f"inputs: {self!r} was built for {self.cell.input_size} input "
                    f"features, got {input_size}"
                )
            return
        dtype = self.cell_dtype or dtype or torch.get_default_dtype()
        layer = self._layer(input_size)
        layer = layer._replace(variables={role: role for role in variable_shapes(layer)})
        cell = make_cell(layer, **self._options()).to(device=device, dtype=dtype)
        load_layer(cell, layer, layer_arrays(layer, initial_values(layer, dtype)))
        self.cell = cell

    def zero_state(self, batch_size: int, dtype: torch.dtype | None = None) -> Any:
        size = self.state_size
        make = lambda n: torch.zeros(batch_size, n, dtype=dtype or self.cell_dtype)  # noqa: E731
        return (
            LSTMStateTuple(make(size.c), make(size.h))
            if isinstance(size, LSTMStateTuple)
            else make(size)
        )

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step, as calling a TF cell: ``(output, new_state)``."""
        self.build(inputs.shape[-1], inputs.dtype, inputs.device)
        out, new = self.built_cell(inputs, _layer_state(self, state))
        return out, tf_layer_state(self, new)

    def extra_repr(self) -> str:
        opts = "".join(
            f", {k}={v!r}"
            for k, v in self._options().items()
            if v is not None and (k, v) != ("activation", "tanh")
        )
        return f"num_units={self.num_units}{opts}"


class BasicLSTMCell(_Cell):
    """TF1's ``BasicLSTMCell``: ``forget_bias`` added to the forget gate at run time;
    ``activation`` (tanh by default; a name of :mod:`rnnfuse.cells.activations` or its torch
    function) acts on the candidate and on ``c`` before the output gate."""

    tf_name, cell_type = "basic_lstm_cell", "BasicLSTMCell"

    def __init__(
        self,
        num_units: int,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Any = None,
        reuse: Any = None,
        name: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(num_units, dtype)
        self.state_is_tuple = _check_tuple_state(state_is_tuple)
        self.activation = _activation(activation)
        self.forget_bias = _float("forget_bias", forget_bias)

    @property
    def state_size(self) -> Any:
        """``LSTMStateTuple(c, h)`` sizes, or their sum with ``state_is_tuple=False``."""
        if not self.state_is_tuple:
            return self.num_units + self.output_size
        return LSTMStateTuple._make((self.num_units, self.output_size))  # sizes, not tensors

    def zero_state(self, batch_size: int, dtype: torch.dtype | None = None) -> Any:
        return (
            torch.zeros(batch_size, self.state_size, dtype=dtype or self.cell_dtype)
            if not self.state_is_tuple
            else super().zero_state(batch_size, dtype)
        )

    def _options(self) -> dict[str, Any]:
        return {"forget_bias": self.forget_bias, "activation": self.activation}


class LSTMCell(BasicLSTMCell):
    """TF1's ``LSTMCell``: peepholes, ``cell_clip``, projection ``num_proj`` and ``proj_clip``.

    Options after ``num_units`` are keyword-only, so TF's positional ``initializer`` slot
    cannot shift them silently.
    """

    tf_name, cell_type = "lstm_cell", "LSTMCell"

    def __init__(
        self,
        num_units: int,
        *,
        use_peepholes: bool = False,
        cell_clip: float | None = None,
        num_proj: int | None = None,
        proj_clip: float | None = None,
        forget_bias: float = 1.0,
        state_is_tuple: bool = True,
        activation: Any = None,
        dtype: Any = None,
    ) -> None:
        super().__init__(
            num_units,
            forget_bias,
            state_is_tuple=state_is_tuple,
            activation=activation,
            dtype=dtype,
        )
        if num_proj is not None and (type(num_proj) is not int or num_proj <= 0):
            raise ValueError(f"num_proj: expected a positive int or None, got {num_proj!r}")
        if proj_clip is not None and num_proj is None:
            raise ValueError(
                "proj_clip: clips the projection, so it needs num_proj; got num_proj=None"
            )
        self.use_peepholes, self.num_proj = bool(use_peepholes), num_proj
        self.cell_clip = None if cell_clip is None else _float("cell_clip", cell_clip)
        self.proj_clip = None if proj_clip is None else _float("proj_clip", proj_clip)

    def _options(self) -> dict[str, Any]:
        return {
            "forget_bias": self.forget_bias,
            "cell_clip": self.cell_clip,
            "proj_clip": self.proj_clip,
            "activation": self.activation,
        }

    def extra_repr(self) -> str:
        extra = ", use_peepholes=True" if self.use_peepholes else ""
        extra += f", num_proj={self.num_proj}" if self.num_proj else ""
        return super().extra_repr() + extra


class GRUCell(_Cell):
    """TF1's ``GRUCell`` (reset applied before the candidate's matmul)."""

    tf_name, cell_type = "gru_cell", "GRUCell"

    def __init__(self, num_units: int, *, activation: Any = None, dtype: Any = None) -> None:
        super().__init__(num_units, dtype)
        self.activation = _activation(activation)

    def _options(self) -> dict[str, Any]:
        return {"activation": self.activation}


class BasicRNNCell(_Cell):
    """TF1's ``BasicRNNCell``: ``h' = activation([x, h] W + b)``, tanh by default."""

    tf_name, cell_type = "basic_rnn_cell", "BasicRNNCell"

    def __init__(self, num_units: int, *, activation: Any = None, dtype: Any = None) -> None:
        super().__init__(num_units, dtype)
        self.activation = _activation(activation)

    def _options(self) -> dict[str, Any]:
        return {"activation": self.activation}


class MultiRNNCell(nn.Module):
    """TF1's ``MultiRNNCell``: layers run bottom to top; the state is a tuple per layer."""

    def __init__(self, cells: Sequence[_Cell], state_is_tuple: bool = True) -> None:
        super().__init__()
        self.state_is_tuple = _check_tuple_state(state_is_tuple)
        if isinstance(cells, nn.Module) or not isinstance(cells, Sequence) or not cells:
            raise TypeError(f"cells: expected a non-empty list of cells, got {cells!r}")
        for i, cell in enumerate(cells):
            if not isinstance(cell, _Cell) and not is_wrapper(cell):
                raise TypeError(
                    f"cells[{i}]: expected BasicLSTMCell, LSTMCell, GRUCell, "
                    f"BasicRNNCell or a wrapper of one, got {type(cell).__name__}"
                )
            first = next(j for j, c in enumerate(cells) if c is cell)
            if first != i:
                raise ValueError(
                    f"cells[{first}] and cells[{i}] are the same {type(cell).__name__} object, so "
                    "both layers would share one set of weights (TF1 fails here too: `[cell] * n` "
                    "repeats one object). Build one cell per layer: "
                    f"MultiRNNCell([{type(cell).__name__}(num_units={cell.num_units}) for _ in "
                    f"range({len(cells)})])"
                )
        self.cells: Sequence[_Cell] = cast("Sequence[_Cell]", nn.ModuleList(cells))
        self.tf_scope: str | None = None

    @property
    def state_size(self) -> Any:
        """One size per layer, or their sum with ``state_is_tuple=False``."""
        sizes = tuple(c.state_size for c in self.cells)
        return sizes if self.state_is_tuple else sum(_flat_size(s) for s in sizes)

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    def zero_state(self, batch_size: int, dtype: torch.dtype | None = None) -> Any:
        states = tuple(c.zero_state(batch_size, dtype) for c in self.cells)
        return states if self.state_is_tuple else join_layers(self, states)

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step through every layer: ``(output, new_state)``."""
        state = (None,) * len(self.cells) if state is None else split_layers(self, state)
        if len(state) != len(self.cells):
            raise ValueError(
                f"state: expected one state per layer ({len(self.cells)}), got {len(state)}"
            )
        new = []
        for cell, layer_state in zip(self.cells, state, strict=True):
            inputs, s = cell(inputs, layer_state)
            new.append(s)
        return inputs, tuple(new) if self.state_is_tuple else join_layers(self, new)


def _flat_size(size: Any) -> int:
    return sum(size) if isinstance(size, tuple) else size


def split_layers(multi: MultiRNNCell, state: Any) -> tuple:
    """A ``MultiRNNCell`` state as one state per layer (splitting a concatenated one)."""
    if multi.state_is_tuple or not isinstance(state, Tensor):
        return tuple(state)
    sizes = [_flat_size(c.state_size) for c in multi.cells]
    if state.shape[-1] != sum(sizes):
        raise ValueError(
            f"state: expected [batch, {sum(sizes)}] (the layers' states {sizes} "
            f"concatenated, state_is_tuple=False), got {list(state.shape)}"
        )
    return tuple(state.split(sizes, dim=-1))


def join_layers(multi: MultiRNNCell, states: Sequence[Any]) -> Tensor:
    """The layers' states concatenated, as ``MultiRNNCell(state_is_tuple=False)`` gives it."""
    parts = [torch.cat(list(s), -1) if isinstance(s, tuple) else s for s in states]
    return torch.cat(parts, -1)


def _layer_state(layer: Any, state: Any) -> Any:
    """A layer's state as the rnnfuse cell takes it (an ``LSTMStateTuple`` for an LSTM)."""
    core = core_cell(layer)
    if not isinstance(core, BasicLSTMCell) or state is None:
        return state
    if isinstance(state, (tuple, list)) and len(state) == 2:
        return LSTMStateTuple(*state)
    if isinstance(state, Tensor):
        c, h = core.num_units, core.output_size
        if state.shape[-1] != c + h:
            raise ValueError(
                f"state: expected [batch, {c + h}] ([c, h] concatenated, "
                f"state_is_tuple=False), got {list(state.shape)}"
            )
        return LSTMStateTuple(state[..., :c], state[..., c:])
    return state


def tf_layer_state(layer: Any, state: Any) -> Any:
    """A layer's rnnfuse state as TF gives it (concatenated for ``state_is_tuple=False``)."""
    if isinstance(state, LSTMStateTuple) and not core_cell(layer).state_is_tuple:
        return torch.cat([state.c, state.h], -1)
    return state


def _as_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or dtype
    found = getattr(torch, str(name), None) if isinstance(name, str) else None
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise TypeError(
            f"dtype: expected a floating torch dtype or its name ('float32'), got {dtype!r}"
        )
    return found


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float, got {value!r}")
    return float(value)


def _check_tuple_state(state_is_tuple: Any) -> bool:
    if not isinstance(state_is_tuple, bool):
        raise TypeError(f"state_is_tuple: expected a bool, got {state_is_tuple!r}")
    return state_is_tuple


def _activation(activation: Any) -> str:
    """The rnnfuse name of a TF cell's ``activation``: ``None`` (tanh), a name of
    :mod:`rnnfuse.cells.activations`, or the torch function of one (``torch.relu``)."""
    if activation is None:
        return "tanh"
    if isinstance(activation, str):
        return check_activation("activation", activation)
    for function, name in _FUNCTION_NAMES:
        if activation is function:
            return name
    raise ValueError(
        f"activation: expected None, one of {sorted(ACTIVATIONS)} or the torch function "
        f"of one (e.g. torch.relu), got {activation!r}"
    )


#: torch functions a TF1 program ported to PyTorch may pass, and their names
_FUNCTION_NAMES = [
    (torch.tanh, "tanh"),
    (torch.sigmoid, "sigmoid"),
    (torch.relu, "relu"),
    (torch.exp, "exponential"),
] + [(f, name) for name, f in ACTIVATIONS.items()]
