"""A TensorFlow 1 style facade: TF1 RNN code runs on rnnfuse with its imports changed.

Cells are ``nn.Module`` s that build their rnnfuse cell at the first call, when the input
size is known (as TF builds its variables), with TF's initialisers (Glorot-uniform
kernels, zero biases, ``gates/bias`` of a GRU at 1.0).  ``dynamic_rnn`` and
``bidirectional_dynamic_rnn`` return what TF returns: ``(outputs, state)`` with an
:data:`LSTMStateTuple` for an LSTM, a tensor for a GRU/RNN and a tuple per layer for a
:class:`MultiRNNCell`.  :func:`restore` loads a TF1 checkpoint into such a model, strictly.

>>> import torch
>>> from rnnfuse import tf1
>>> cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(num_units=n) for n in (20, 20)])
>>> output, state = tf1.dynamic_rnn(cells, torch.randn(3, 5, 6), time_major=True)
>>> tuple(output.shape), tuple(state[1].h.shape)
((3, 5, 20), (5, 20))
>>> sorted(tf1.get_variables(cells))[0]
'rnn/multi_rnn_cell/cell_0/basic_lstm_cell/bias'

Differences from TF: a cell object owns one set of weights, so running one cell under two
scopes is refused (TF would create a second set); ``parallel_iterations`` and
``swap_memory`` are accepted and have no effect (they do not change TF's numbers either);
activations other than tanh (and relu for ``BasicRNNCell``) are not supported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from .cells import RecurrentCell
from .interop.tf1 import (BidirectionalRNN, TF1VariableError, check_layers, copy_arrays,
                          initial_values, layer_arrays, load_stack, make_cell, stack_to_tf)
from .interop.tf1_checkpoint import CheckpointError, read_checkpoint
from .interop.tf1_names import TFBidirectional, TFLayer, TFStack, parse_scope, variable_shapes
from .stack import StackedRNN
from .state import LSTMState as LSTMStateTuple

__all__ = [
    "BasicLSTMCell", "LSTMCell", "GRUCell", "BasicRNNCell", "MultiRNNCell", "LSTMStateTuple",
    "dynamic_rnn", "bidirectional_dynamic_rnn", "variable_scope", "restore", "get_variables",
    "as_stack", "load_stack", "read_checkpoint", "CheckpointError", "TF1VariableError",
    "BidirectionalRNN",
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


# ----------------------------------------------------------------------------- cells
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

    @property
    def built(self) -> bool:
        return self.cell is not None

    @property
    def output_size(self) -> int:
        return self.num_proj or self.num_units

    @property
    def state_size(self) -> Any:
        return self.num_units

    def _layer(self, input_size: int) -> TFLayer:
        return TFLayer(self.tf_name, self.cell_type, input_size, self.num_units, self.num_proj,
                       self.use_peepholes, {})

    def _options(self) -> dict[str, Any]:
        return {}

    def build(self, input_size: int, dtype: torch.dtype | None = None, device: Any = None) -> None:
        """Create the weights for ``input_size`` features, with TF's initialisers."""
        if self.cell is not None:
            if self.cell.input_size != input_size:
                raise ValueError(f"inputs: {self!r} was built for {self.cell.input_size} input "
                                 f"features, got {input_size}")
            return
        dtype = self.cell_dtype or dtype or torch.get_default_dtype()
        layer = self._layer(input_size)
        layer = layer._replace(variables={role: role for role in variable_shapes(layer)})
        cell = make_cell(layer, **self._options()).to(device=device, dtype=dtype)
        copy_arrays(cell, layer_arrays(layer, initial_values(layer, dtype)))
        self.cell = cell

    def zero_state(self, batch_size: int, dtype: torch.dtype | None = None) -> Any:
        size = self.state_size
        make = lambda n: torch.zeros(batch_size, n, dtype=dtype or self.cell_dtype)  # noqa: E731
        return LSTMStateTuple(make(size.c), make(size.h)) if isinstance(size, tuple) else make(size)

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step, as calling a TF cell: ``(output, new_state)``."""
        self.build(inputs.shape[-1], inputs.dtype, inputs.device)
        return self.cell(inputs, _layer_state(self, state))

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self._options().items() if v is not None)
        return f"num_units={self.num_units}{opts}"


class BasicLSTMCell(_Cell):
    """TF1's ``BasicLSTMCell``: ``forget_bias`` added to the forget gate at run time."""

    tf_name, cell_type = "basic_lstm_cell", "BasicLSTMCell"

    def __init__(self, num_units: int, forget_bias: float = 1.0, *, state_is_tuple: bool = True,
                 activation: Any = None, dtype: Any = None) -> None:
        super().__init__(num_units, dtype)
        _check_tuple_state(state_is_tuple)
        _activation(activation, relu_ok=False)
        self.forget_bias = _float("forget_bias", forget_bias)

    @property
    def state_size(self) -> Any:
        return LSTMStateTuple(self.num_units, self.output_size)

    def _options(self) -> dict[str, Any]:
        return {"forget_bias": self.forget_bias}


class LSTMCell(BasicLSTMCell):
    """TF1's ``LSTMCell``: peepholes, ``cell_clip``, projection ``num_proj`` and ``proj_clip``.

    Options after ``num_units`` are keyword-only, so TF's positional ``initializer`` slot
    cannot shift them silently.
    """

    tf_name, cell_type = "lstm_cell", "LSTMCell"

    def __init__(self, num_units: int, *, use_peepholes: bool = False, cell_clip: float | None = None,
                 num_proj: int | None = None, proj_clip: float | None = None, forget_bias: float = 1.0,
                 state_is_tuple: bool = True, activation: Any = None, dtype: Any = None) -> None:
        super().__init__(num_units, forget_bias, state_is_tuple=state_is_tuple,
                         activation=activation, dtype=dtype)
        if num_proj is not None and (type(num_proj) is not int or num_proj <= 0):
            raise ValueError(f"num_proj: expected a positive int or None, got {num_proj!r}")
        if proj_clip is not None and num_proj is None:
            raise ValueError("proj_clip: clips the projection, so it needs num_proj; got num_proj=None")
        self.use_peepholes, self.num_proj = bool(use_peepholes), num_proj
        self.cell_clip = None if cell_clip is None else _float("cell_clip", cell_clip)
        self.proj_clip = None if proj_clip is None else _float("proj_clip", proj_clip)

    def _options(self) -> dict[str, Any]:
        return {"forget_bias": self.forget_bias, "cell_clip": self.cell_clip,
                "proj_clip": self.proj_clip}

    def extra_repr(self) -> str:
        extra = ", use_peepholes=True" if self.use_peepholes else ""
        extra += f", num_proj={self.num_proj}" if self.num_proj else ""
        return super().extra_repr() + extra


class GRUCell(_Cell):
    """TF1's ``GRUCell`` (reset applied before the candidate's matmul)."""

    tf_name, cell_type = "gru_cell", "GRUCell"

    def __init__(self, num_units: int, *, activation: Any = None, dtype: Any = None) -> None:
        super().__init__(num_units, dtype)
        _activation(activation, relu_ok=False)


class BasicRNNCell(_Cell):
    """TF1's ``BasicRNNCell``: ``h' = activation([x, h] W + b)``, tanh (default) or relu."""

    tf_name, cell_type = "basic_rnn_cell", "BasicRNNCell"

    def __init__(self, num_units: int, *, activation: Any = None, dtype: Any = None) -> None:
        super().__init__(num_units, dtype)
        self.activation = _activation(activation, relu_ok=True)

    def _options(self) -> dict[str, Any]:
        return {"activation": self.activation}


class MultiRNNCell(nn.Module):
    """TF1's ``MultiRNNCell``: layers run bottom to top; the state is a tuple per layer."""

    def __init__(self, cells: Sequence[_Cell], state_is_tuple: bool = True) -> None:
        super().__init__()
        _check_tuple_state(state_is_tuple)
        if isinstance(cells, nn.Module) or not isinstance(cells, Sequence) or not cells:
            raise TypeError(f"cells: expected a non-empty list of cells, got {cells!r}")
        for i, cell in enumerate(cells):
            if not isinstance(cell, _Cell):
                raise TypeError(f"cells[{i}]: expected BasicLSTMCell, LSTMCell, GRUCell or "
                                f"BasicRNNCell, got {type(cell).__name__}")
            first = next(j for j, c in enumerate(cells) if c is cell)
            if first != i:
                raise ValueError(
                    f"cells[{first}] and cells[{i}] are the same {type(cell).__name__} object, so both "
                    f"layers would share one set of weights (TF1 fails here too: `[cell] * n` repeats "
                    f"one object). Build one cell per layer: MultiRNNCell([{type(cell).__name__}"
                    f"(num_units={cell.num_units}) for _ in range({len(cells)})])")
        self.cells = nn.ModuleList(cells)
        self.tf_scope: str | None = None

    @property
    def state_size(self) -> tuple:
        return tuple(c.state_size for c in self.cells)

    @property
    def output_size(self) -> int:
        return self.cells[-1].output_size

    def zero_state(self, batch_size: int, dtype: torch.dtype | None = None) -> tuple:
        return tuple(c.zero_state(batch_size, dtype) for c in self.cells)

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, tuple]:
        """One step through every layer: ``(output, new_state)``."""
        state = (None,) * len(self.cells) if state is None else state
        new = []
        for cell, layer_state in zip(self.cells, state):
            inputs, s = cell(inputs, layer_state)
            new.append(s)
        return inputs, tuple(new)


# ----------------------------------------------------------------------------- running
def dynamic_rnn(cell: nn.Module, inputs: Any, sequence_length: Any = None, initial_state: Any = None,
                dtype: Any = None, parallel_iterations: int | None = None, swap_memory: bool = False,
                time_major: bool = False, scope: str | None = None) -> tuple[Tensor, Any]:
    """TF1's ``tf.nn.dynamic_rnn``: ``(outputs, state)``.

    Outputs past a sequence's length are zero; the state is the one at its last step.
    """
    x = _inputs(inputs, dtype)
    _build(cell, x, "cell")
    _record_scope(cell, _full_scope(scope, "rnn"))
    outputs, state = as_stack(cell, time_major)(x, sequence_length, _to_stack_state(cell, initial_state))
    return outputs, _from_stack_state(cell, state)


def bidirectional_dynamic_rnn(
    cell_fw: nn.Module, cell_bw: nn.Module, inputs: Any, sequence_length: Any = None,
    initial_state_fw: Any = None, initial_state_bw: Any = None, dtype: Any = None,
    parallel_iterations: int | None = None, swap_memory: bool = False, time_major: bool = False,
    scope: str | None = None,
) -> tuple[tuple[Tensor, Tensor], tuple[Any, Any]]:
    """TF1's ``bidirectional_dynamic_rnn``: ``((out_fw, out_bw), (state_fw, state_bw))``.

    Two independent stacks; the backward one reads each sequence reversed within its length.
    """
    if cell_fw is cell_bw:
        raise ValueError("cell_bw: is the same object as cell_fw; each direction needs its own cell")
    x = _inputs(inputs, dtype)
    _build(cell_fw, x, "cell_fw")
    _build(cell_bw, x, "cell_bw")
    full = _full_scope(scope, "bidirectional_rnn")
    _record_scope(cell_fw, f"{full}/fw")
    _record_scope(cell_bw, f"{full}/bw")
    module = BidirectionalRNN(as_stack(cell_fw, time_major), as_stack(cell_bw, time_major))
    start = (_to_stack_state(cell_fw, initial_state_fw), _to_stack_state(cell_bw, initial_state_bw))
    outputs, (fw, bw) = module.forward_split(x, sequence_length, start)
    return outputs, (_from_stack_state(cell_fw, fw), _from_stack_state(cell_bw, bw))


def as_stack(cell: nn.Module, time_major: bool = False) -> StackedRNN:
    """A :class:`~rnnfuse.StackedRNN` sharing the (built) cell's weights, e.g. to save it."""
    layers = _layers(cell, "cell")
    if not all(layer.built for layer in layers):
        raise ValueError("cell: not built yet; run it once (dynamic_rnn) or restore() it first")
    return StackedRNN.from_cells([layer.cell for layer in layers], batch_first=not time_major)


# ----------------------------------------------------------------------------- checkpoints
def restore(module: Any, prefix: str | os.PathLike[str] | Mapping[str, np.ndarray],
            scope: str | None = None, *, ignore: Sequence[str] = ()) -> None:
    """Load a TF1 checkpoint (or a ``{tf_name: array}`` dict) into a facade model, strictly.

    ``scope`` is the ``dynamic_rnn`` scope (``"rnn"``, ``"encoder1/rnn"``); by default the
    one the model last ran under, else ``"rnn"``.  For ``bidirectional_dynamic_rnn`` pass
    ``(cell_fw, cell_bw)`` (default scope ``"bidirectional_rnn"``).  Cells not yet built
    are built from the checkpoint's shapes.  A model that differs from the checkpoint
    (cell types, sizes, layers) and variables missing, left over or of the wrong shape
    raise ``ValueError`` listing them.
    """
    variables = prefix if isinstance(prefix, Mapping) else read_checkpoint(prefix)
    if isinstance(module, (tuple, list)):
        if len(module) != 2:
            raise TypeError(f"module: expected a cell or a (cell_fw, cell_bw) pair, got {len(module)} items")
        scope = _pair_scope(module, scope)
        parsed = parse_scope(variables, scope, ignore)
        if not isinstance(parsed, TFBidirectional):
            raise ValueError(f"scope: {scope!r} holds one dynamic_rnn, not a bidirectional one; "
                             f"restore one cell instead of a (cell_fw, cell_bw) pair")
        _restore_stack(module[0], parsed.fw, variables)
        _restore_stack(module[1], parsed.bw, variables)
        return
    scope = scope or getattr(module, "tf_scope", None) or "rnn"
    parsed = parse_scope(variables, scope, ignore)
    if isinstance(parsed, TFBidirectional):
        raise ValueError(f"scope: {scope!r} holds a bidirectional_dynamic_rnn (fw/ and bw/); "
                         f"pass the pair: restore((cell_fw, cell_bw), prefix, {scope!r})")
    _restore_stack(module, parsed, variables)


def _restore_stack(cell: nn.Module, tf_stack: TFStack, variables: Mapping[str, np.ndarray]) -> None:
    layers = _layers(cell, "module")
    wanted = [mine._layer(mine.cell.input_size if mine.built else theirs.input_size)
              for mine, theirs in zip(layers, tf_stack.layers)]
    check_layers(wanted, len(layers), isinstance(cell, MultiRNNCell), tf_stack)
    for mine, theirs in zip(layers, tf_stack.layers):
        arrays = layer_arrays(theirs, variables)
        mine.build(theirs.input_size, torch.from_numpy(arrays["weight_ih"]).dtype)
        copy_arrays(mine.cell, arrays)


def _pair_scope(pair: Sequence[Any], scope: str | None) -> str:
    recorded = getattr(pair[0], "tf_scope", None) or ""
    return scope or (recorded[:-3] if recorded.endswith("/fw") else "bidirectional_rnn")


def get_variables(module: Any, scope: str | None = None) -> dict[str, np.ndarray]:
    """The variables TF1 would hold for a built model: ``{tf_name: array}`` in TF's layout.

    ``module`` is a cell, a :class:`MultiRNNCell` or a ``(cell_fw, cell_bw)`` pair; the
    scope defaults to the one the model last ran under.
    """
    if isinstance(module, (tuple, list)):
        scope = _pair_scope(module, scope)
        return {**get_variables(module[0], f"{scope}/fw"), **get_variables(module[1], f"{scope}/bw")}
    names = [layer.tf_name for layer in _layers(module, "module")]
    return stack_to_tf(as_stack(module), scope or module.tf_scope or "rnn",
                       multi=isinstance(module, MultiRNNCell), cell_names=names)


# ----------------------------------------------------------------------------- helpers
def _layers(cell: Any, name: str) -> list[_Cell]:
    if isinstance(cell, MultiRNNCell):
        return list(cell.cells)
    if isinstance(cell, _Cell):
        return [cell]
    raise TypeError(f"{name}: expected a tf1 cell (BasicLSTMCell, LSTMCell, GRUCell, BasicRNNCell) "
                    f"or a MultiRNNCell, got {type(cell).__name__}")


def _build(cell: Any, x: Tensor, name: str) -> None:
    size = x.shape[-1]
    for layer in _layers(cell, name):
        layer.build(size, x.dtype, x.device)
        if layer.cell.weight_ih.dtype != x.dtype:
            raise TypeError(f"inputs: expected dtype {layer.cell.weight_ih.dtype} (the dtype {name} "
                            f"was built with), got {x.dtype}")
        size = layer.output_size


def _record_scope(cell: Any, scope: str) -> None:
    if cell.tf_scope not in (None, scope):
        raise ValueError(f"cell: already ran under scope {cell.tf_scope!r}; TF would create new "
                         f"variables under {scope!r}, but a cell owns one set of weights. Build a "
                         f"new cell for this dynamic_rnn")
    cell.tf_scope = scope


def _inputs(inputs: Any, dtype: Any) -> Tensor:
    x = torch.from_numpy(inputs) if isinstance(inputs, np.ndarray) else inputs
    if not isinstance(x, Tensor):
        raise TypeError(f"inputs: expected a Tensor or a NumPy array, got {type(inputs).__name__}")
    want = _as_dtype(dtype)
    if want is not None and x.dtype != want:
        raise TypeError(f"inputs: expected dtype {want} (the dtype argument), got {x.dtype}")
    return x


def _layer_state(layer: _Cell, state: Any) -> Any:
    if isinstance(layer.state_size, tuple) and isinstance(state, (tuple, list)) and len(state) == 2:
        return LSTMStateTuple(*state)
    return state


def _to_stack_state(cell: Any, state: Any) -> Any:
    if state is None:
        return None
    if isinstance(cell, MultiRNNCell):
        if not isinstance(state, (tuple, list)) or isinstance(state, LSTMStateTuple):
            raise TypeError(f"initial_state: expected one state per layer of the MultiRNNCell "
                            f"({len(cell.cells)}), got {type(state).__name__}")
        return tuple(_layer_state(layer, s) for layer, s in zip(cell.cells, state)) + tuple(
            state[len(cell.cells):])
    return (_layer_state(cell, state),)


def _from_stack_state(cell: Any, state: tuple) -> Any:
    return state if isinstance(cell, MultiRNNCell) else state[0]


def _as_dtype(dtype: Any) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or dtype
    found = getattr(torch, str(name), None) if isinstance(name, str) else None
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch dtype or its name ('float32'), got {dtype!r}")
    return found


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float, got {value!r}")
    return float(value)


def _check_tuple_state(state_is_tuple: Any) -> None:
    if state_is_tuple is not True:
        raise ValueError(f"state_is_tuple: only True (TF's default) is supported, got {state_is_tuple!r}")


def _activation(activation: Any, relu_ok: bool) -> str:
    names = {None: "tanh", "tanh": "tanh", torch.tanh: "tanh", "relu": "relu", torch.relu: "relu",
             nn.functional.relu: "relu"}
    try:
        found = names.get(activation)
    except TypeError:  # unhashable
        found = None
    if found is None or (found == "relu" and not relu_ok):
        allowed = "tanh or relu" if relu_ok else "tanh (rnnfuse's LSTM and GRU cells use tanh)"
        raise ValueError(f"activation: expected {allowed}, got {activation!r}")
    return found
