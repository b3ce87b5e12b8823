"""Running and restoring TF1 facade models: ``dynamic_rnn``, ``bidirectional_dynamic_rnn``,
``restore``, ``get_variables``, ``as_stack``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..bidirectional import BidirectionalRNN
from ..stack import StackedRNN
from ..state import LSTMState as LSTMStateTuple
from ._layers import check_layers, layer_arrays, load_layer
from .cells import MultiRNNCell, _as_dtype, _Cell, _full_scope, _layer_state
from .checkpoint import read_checkpoint
from .convert import stack_to_tf
from .names import TFBidirectional, TFStack, parse_scope

__all__ = ["dynamic_rnn", "bidirectional_dynamic_rnn", "as_stack", "restore", "get_variables"]


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
    return StackedRNN.from_cells([layer.built_cell for layer in layers], batch_first=not time_major)


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
    wanted = [mine._layer(mine.built_cell.input_size if mine.built else theirs.input_size)
              for mine, theirs in zip(layers, tf_stack.layers)]
    check_layers(wanted, len(layers), isinstance(cell, MultiRNNCell), tf_stack)
    for mine, theirs in zip(layers, tf_stack.layers):
        arrays = layer_arrays(theirs, variables)
        mine.build(theirs.input_size, torch.from_numpy(arrays["weight_ih"]).dtype)
        load_layer(mine.built_cell, theirs, arrays)


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
        if layer.built_cell.weight_ih.dtype != x.dtype:
            raise TypeError(f"inputs: expected dtype {layer.built_cell.weight_ih.dtype} (the dtype {name} "
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
