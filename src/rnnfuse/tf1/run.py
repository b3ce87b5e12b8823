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
from ..cells import RecurrentCell
from ..stack import StackedRNN
from ..state import BidirectionalState
from ..state import LSTMState as LSTMStateTuple
from ._layers import check_layers, layer_arrays, load_layer
from .cells import (
    MultiRNNCell,
    _as_dtype,
    _Cell,
    _full_scope,
    _layer_state,
    join_layers,
    split_layers,
    tf_layer_state,
)
from .checkpoint import read_checkpoint
from .convert import model_variables, stack_to_tf
from .names import TFBidirectional, TFStack, TFStackBidirectional, parse_scope
from .stacking import LayerForm, NotExact, layer_form, stack_dropout
from .wrappers import core_cell, is_wrapper, run_layer

__all__ = ["dynamic_rnn", "bidirectional_dynamic_rnn", "as_stack", "restore", "get_variables"]


def dynamic_rnn(
    cell: nn.Module,
    inputs: Any,
    sequence_length: Any = None,
    initial_state: Any = None,
    dtype: Any = None,
    parallel_iterations: int | None = None,
    swap_memory: bool = False,
    time_major: bool = False,
    scope: str | None = None,
) -> tuple[Tensor, Any]:
    """TF1's ``tf.nn.dynamic_rnn``: ``(outputs, state)``.

    Outputs past a sequence's length are zero; the state is the one at its last step.

    Args:
        cell: a facade cell (``BasicLSTMCell``, ``LSTMCell``, ``GRUCell``, ``BasicRNNCell``),
            a ``MultiRNNCell`` of them, or a wrapper; built at the first call, when the input
            size is known.
        inputs: ``(B, T, F)``, or ``(T, B, F)`` with ``time_major=True``.
        sequence_length: ``(B,)`` lengths in any order, or ``None`` for all ``T``.
        initial_state: TF's structure of the cell's state (an ``LSTMStateTuple`` per LSTM
            layer, a tuple per ``MultiRNNCell``), or ``None`` for zeros.
        dtype: the dtype of ``inputs`` when they are not a tensor yet.
        parallel_iterations: accepted for TF's signature; no effect.
        swap_memory: accepted for TF's signature; no effect.
        time_major: ``inputs`` and ``outputs`` are ``(T, B, ...)``.
        scope: the variable scope (TF's default ``"rnn"``), used by :func:`restore` and
            :func:`get_variables`.

    Returns:
        ``(outputs, state)``: ``outputs`` is ``(B, T, H_top)`` (``(T, B, H_top)`` when
        ``time_major``); ``state`` has TF's structure: an ``LSTMStateTuple(c, h)`` of
        ``(B, H)`` tensors for an LSTM cell, a ``(B, H)`` tensor for a GRU or RNN cell, a
        tuple of those per layer for a ``MultiRNNCell``.
    """
    x = _inputs(inputs, dtype)
    _build(cell, x, "cell")
    _record_scope(cell, _full_scope(scope, "rnn"))
    start = _to_stack_state(cell, initial_state)
    if not _wrapped(cell):
        outputs, state = as_stack(cell, time_major)(x, sequence_length, start)
    else:
        outputs, state = _run_wrapped(cell, x, sequence_length, start, time_major)
    return outputs, _from_stack_state(cell, state)


def bidirectional_dynamic_rnn(
    cell_fw: nn.Module,
    cell_bw: nn.Module,
    inputs: Any,
    sequence_length: Any = None,
    initial_state_fw: Any = None,
    initial_state_bw: Any = None,
    dtype: Any = None,
    parallel_iterations: int | None = None,
    swap_memory: bool = False,
    time_major: bool = False,
    scope: str | None = None,
) -> tuple[tuple[Tensor, Tensor], BidirectionalState]:
    """TF1's ``bidirectional_dynamic_rnn``: ``((out_fw, out_bw), (state_fw, state_bw))``.

    Two independent stacks; the backward one reads each sequence reversed within its length.

    Args:
        cell_fw: the forward direction's cell, as :func:`dynamic_rnn`'s ``cell``.
        cell_bw: the backward direction's cell, another object than ``cell_fw``.
        inputs: as :func:`dynamic_rnn`'s.
        sequence_length: as :func:`dynamic_rnn`'s.
        initial_state_fw: the forward direction's initial state (as :func:`dynamic_rnn`'s),
            or ``None``.
        initial_state_bw: the backward direction's, or ``None``.
        dtype: as :func:`dynamic_rnn`'s.
        parallel_iterations: no effect (TF's loop option).
        swap_memory: no effect (TF's loop option).
        time_major: as :func:`dynamic_rnn`'s.
        scope: defaults to ``"bidirectional_rnn"`` (the cells' variables under
            ``<scope>/fw`` and ``<scope>/bw``).

    Returns:
        ``((out_fw, out_bw), state)``: ``out_fw`` ``(B, T, H_fw)`` and ``out_bw``
        ``(B, T, H_bw)`` in time order (``(T, B, ...)`` when ``time_major``), zero past each
        length; ``state`` a :class:`~rnnfuse.state.BidirectionalState` ``(fw, bw)`` (it
        unpacks as TF's pair), each as :func:`dynamic_rnn` gives it for that cell: an
        ``LSTMStateTuple`` or a ``(B, H)`` tensor for one cell, a tuple per layer for a
        ``MultiRNNCell``.

    Raises:
        ValueError: ``cell_bw`` is ``cell_fw``.

    Example:
        >>> import torch
        >>> from rnnfuse.tf1 import GRUCell
        >>> (out_fw, out_bw), state = bidirectional_dynamic_rnn(
        ...     GRUCell(4), GRUCell(3), torch.randn(2, 5, 6), sequence_length=[5, 2])
        >>> out_bw.shape, type(state).__name__, tuple(state.fw.shape), tuple(state.bw.shape)
        (torch.Size([2, 5, 3]), 'BidirectionalState', (2, 4), (2, 3))
    """
    if cell_fw is cell_bw:
        raise ValueError(
            "cell_bw: is the same object as cell_fw; each direction needs its own cell"
        )
    x = _inputs(inputs, dtype)
    _build(cell_fw, x, "cell_fw")
    _build(cell_bw, x, "cell_bw")
    full = _full_scope(scope, "bidirectional_rnn")
    _record_scope(cell_fw, f"{full}/fw")
    _record_scope(cell_bw, f"{full}/bw")
    start = BidirectionalState(
        _to_stack_state(cell_fw, initial_state_fw), _to_stack_state(cell_bw, initial_state_bw)
    )
    if not (_wrapped(cell_fw) or _wrapped(cell_bw)):
        module = BidirectionalRNN(as_stack(cell_fw, time_major), as_stack(cell_bw, time_major))
        outputs, (fw, bw) = module.forward_split(x, sequence_length, start)
    else:
        out_fw, fw = _run_wrapped(cell_fw, x, sequence_length, start[0], time_major)
        rev = _reverse(x, sequence_length, time_major)
        out_bw, bw = _run_wrapped(cell_bw, rev, sequence_length, start[1], time_major)
        outputs = (out_fw, _reverse(out_bw, sequence_length, time_major))
    return outputs, BidirectionalState(
        _from_stack_state(cell_fw, fw), _from_stack_state(cell_bw, bw)
    )


def as_stack(cell: Any, time_major: bool = False, *, ignore_dropout: bool = False) -> StackedRNN:
    """A :class:`~rnnfuse.StackedRNN` sharing the (built) cell's weights, e.g. to save it.

    A list of parts that fed each other (a cell or ``MultiRNNCell``, or a ``(cell_fw,
    cell_bw)`` pair of one cell each: a bidirectional layer whose ``[fw, bw]`` outputs feed
    the next part) makes one stack: GNMT's encoder is ``as_stack([(fw, bw), uni_cells])``.
    ``ResidualWrapper`` s become residual layers.  ``DropoutWrapper`` s become the stack's
    ``dropout`` / ``variational_dropout`` when that is the same computation (dropout between
    layers only, one keep probability and kind at every boundary, no state dropout, no dropout
    inside a ``ResidualWrapper``: see :mod:`rnnfuse.tf1.stacking`); otherwise ``ValueError``
    says why, unless ``ignore_dropout=True``, which leaves the wrappers' dropout out (the stack
    then equals the program in eval mode only, as TF1 programs run at inference with keep
    probabilities of 1.0).  Keep probabilities of 1.0 are no dropout.
    """
    parts = cell if isinstance(cell, list) else [cell]
    return _stack_of_parts(parts, time_major, ignore_dropout)


def restore(
    module: Any,
    prefix: str | os.PathLike[str] | Mapping[str, np.ndarray],
    scope: str | None = None,
    *,
    ignore: Sequence[str] = (),
    use_ema: bool = False,
) -> None:
    """Load a TF1 checkpoint (or a ``{tf_name: array}`` dict) into a facade model, strictly.

    ``scope`` is the ``dynamic_rnn`` scope (``"rnn"``, ``"encoder1/rnn"``); by default the
    one the model last ran under, else ``"rnn"``.  For ``bidirectional_dynamic_rnn`` pass
    ``(cell_fw, cell_bw)`` (default scope ``"bidirectional_rnn"``), for
    ``stack_bidirectional_dynamic_rnn`` ``(cells_fw, cells_bw)`` (two lists; default scope
    ``"stack_bidirectional_rnn"``).  A wrapper restores its inner cell.  Cells not yet built
    are built from the checkpoint's shapes.  A model that differs from the checkpoint
    (cell types, sizes, layers) and variables missing, left over or of the wrong shape
    raise ``ValueError`` listing them.  Optimizer slots, ``global_step`` and EMA shadows
    are skipped; ``use_ema=True`` loads the ``ExponentialMovingAverage`` shadows instead of
    the raw values (see :func:`rnnfuse.tf1.load_stack`).
    """
    variables = prefix if isinstance(prefix, Mapping) else read_checkpoint(prefix)
    if (
        isinstance(module, (tuple, list))
        and len(module) == 2
        and all(isinstance(m, (tuple, list)) for m in module)
    ):  # stack_bidirectional_dynamic_rnn
        fw, bw = module
        if len(fw) != len(bw):
            raise ValueError(
                f"module: expected as many backward cells as forward ones ({len(fw)}), "
                f"got {len(bw)}"
            )
        scope = (scope or "stack_bidirectional_rnn").strip("/")
        for i, pair in enumerate(zip(fw, bw, strict=True)):
            restore(
                pair,
                variables,
                f"{scope}/cell_{i}/bidirectional_rnn",
                ignore=ignore,
                use_ema=use_ema,
            )
        return
    if isinstance(module, (tuple, list)):
        if len(module) != 2:
            raise TypeError(
                f"module: expected a cell or a (cell_fw, cell_bw) pair, got {len(module)} items"
            )
        scope = _pair_scope(module, scope)
        variables = model_variables(variables, scope, use_ema)
        parsed = parse_scope(variables, scope, ignore)
        if isinstance(parsed, TFStackBidirectional):
            raise ValueError(
                f"scope: {scope!r} holds a stack_bidirectional_dynamic_rnn; pass the "
                f"lists: restore((cells_fw, cells_bw), prefix, {scope!r})"
            )
        if not isinstance(parsed, TFBidirectional):
            raise ValueError(
                f"scope: {scope!r} holds one dynamic_rnn, not a bidirectional one; "
                f"restore one cell instead of a (cell_fw, cell_bw) pair"
            )
        _restore_stack(module[0], parsed.fw, variables)
        _restore_stack(module[1], parsed.bw, variables)
        return
    scope = scope or getattr(module, "tf_scope", None) or "rnn"
    variables = model_variables(variables, scope, use_ema)
    parsed = parse_scope(variables, scope, ignore)
    if isinstance(parsed, TFStackBidirectional):
        raise ValueError(
            f"scope: {scope!r} holds a stack_bidirectional_dynamic_rnn; pass the "
            f"lists: restore((cells_fw, cells_bw), prefix, {scope!r})"
        )
    if isinstance(parsed, TFBidirectional):
        raise ValueError(
            f"scope: {scope!r} holds a bidirectional_dynamic_rnn (fw/ and bw/); "
            f"pass the pair: restore((cell_fw, cell_bw), prefix, {scope!r})"
        )
    _restore_stack(module, parsed, variables)


def _restore_stack(cell: nn.Module, tf_stack: TFStack, variables: Mapping[str, np.ndarray]) -> None:
    layers = _layers(cell, "module")
    wanted = [
        mine._layer(mine.built_cell.input_size if mine.built else theirs.input_size)
        # the layers both have: check_layers reports a different count
        for mine, theirs in zip(layers, tf_stack.layers, strict=False)
    ]
    check_layers(wanted, len(layers), isinstance(cell, MultiRNNCell), tf_stack)
    for mine, theirs in zip(layers, tf_stack.layers, strict=True):
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
        return {
            **get_variables(module[0], f"{scope}/fw"),
            **get_variables(module[1], f"{scope}/bw"),
        }
    names = [layer.tf_name for layer in _layers(module, "module")]
    return stack_to_tf(
        as_stack(module, ignore_dropout=True),
        scope or module.tf_scope or "rnn",
        multi=isinstance(module, MultiRNNCell),
        cell_names=names,
    )


def _stack_of_parts(parts: list[Any], time_major: bool, ignore_dropout: bool) -> StackedRNN:
    fw: list[RecurrentCell] = []
    bw: list[RecurrentCell | None] = []
    forms: list[tuple[LayerForm, LayerForm | None]] = []
    single = len(parts) == 1
    for i, part in enumerate(parts):
        where = "cell" if single else f"cell[{i}]"
        if isinstance(part, (tuple, list)):
            if len(part) != 2 or any(isinstance(p, MultiRNNCell) for p in part):
                raise TypeError(f"{where}: expected a (cell_fw, cell_bw) pair of single cells")
            layers = [_layers(p, where)[0] for p in part]
            if not all(layer.built for layer in layers):
                raise ValueError(f"{where}: not built yet; run it once or restore() it first")
            pair = (
                layer_form(part[0], f"layer {len(forms)} (fw)"),
                layer_form(part[1], f"layer {len(forms)} (bw)"),
            )
            if pair[0].residual or pair[1].residual:
                raise ValueError(
                    f"{where}: a ResidualWrapper in a bidirectional pair adds the input to "
                    f"each direction's output; a StackedRNN adds it to [fw, bw]"
                )
            fw.append(layers[0].built_cell)
            bw.append(layers[1].built_cell)
            forms.append(pair)
            continue
        for wrapped, layer in zip(_wrapped_layers(part), _layers(part, where), strict=True):
            if not layer.built:
                raise ValueError(
                    f"{where}: not built yet; run it once (dynamic_rnn) or restore() it first"
                )
            fw.append(layer.built_cell)
            bw.append(None)
            forms.append((layer_form(wrapped, f"layer {len(forms)}"), None))
    dropout, variational = _dropout_of(forms, ignore_dropout)
    residual = [form.residual for form, _ in forms]
    return StackedRNN.from_cells(
        fw,
        backward_cells=bw if any(c is not None for c in bw) else None,
        batch_first=not time_major,
        residual=residual,
        dropout=dropout,
        variational_dropout=variational,
    )


def _dropout_of(
    forms: list[tuple[LayerForm, LayerForm | None]], ignore: bool
) -> tuple[float, bool]:
    if ignore:
        return 0.0, False
    try:
        return stack_dropout(forms)
    except NotExact as exc:
        raise ValueError(
            f"cell: the DropoutWrappers' dropout has no StackedRNN equivalent: {exc}; "
            f"as_stack(..., ignore_dropout=True) leaves it out (the stack then equals "
            f"the program in eval mode only)"
        ) from None


def _wrapped_layers(cell: Any) -> list[Any]:
    """The layers as given (wrappers included)."""
    return list(cell.cells) if isinstance(cell, MultiRNNCell) else [cell]


def _layers(cell: Any, name: str) -> list[_Cell]:
    """The tf1 cells of each layer (a wrapper's inner cell: wrappers hold no variables)."""
    if isinstance(cell, MultiRNNCell):
        return [core_cell(c) for c in cell.cells]
    if isinstance(core_cell(cell), _Cell):
        return [core_cell(cell)]
    raise TypeError(
        f"{name}: expected a tf1 cell (BasicLSTMCell, LSTMCell, GRUCell, BasicRNNCell), "
        f"a wrapper of one or a MultiRNNCell, got {type(cell).__name__}"
    )


def _wrapped(cell: Any) -> bool:
    return any(is_wrapper(c) for c in _wrapped_layers(cell))


def _run_wrapped(
    cell: Any, x: Tensor, lengths: Any, start: Any, time_major: bool
) -> tuple[Tensor, tuple]:
    """``dynamic_rnn`` of a model with wrappers, layer by layer (each on the fast kernels)."""
    x = x.transpose(0, 1) if time_major else x
    lengths = None if lengths is None else torch.as_tensor(lengths, device=x.device)
    layers = _wrapped_layers(cell)
    start = start if start is not None else (None,) * len(layers)
    if len(start) != len(layers):
        raise ValueError(
            f"initial_state: expected one state per layer ({len(layers)}), got {len(start)}"
        )
    finals = []
    for layer, layer_start in zip(layers, start, strict=True):
        x, final = run_layer(layer, x, lengths, layer_start, _run_core)
        if lengths is not None:
            steps = torch.arange(x.shape[1], device=x.device)
            x = x * (steps[None, :] < lengths[:, None])[..., None].to(x.dtype)
        finals.append(_layer_state(layer, final))
    return (x.transpose(0, 1) if time_major else x), tuple(finals)


def _run_core(core: _Cell, x: Tensor, lengths: Any, state: Any) -> tuple[Tensor, Any]:
    stack = StackedRNN.from_cells([core.built_cell], batch_first=True)
    out, (final,) = stack(x, lengths, None if state is None else (state,))
    return out, final


def _reverse(x: Tensor, lengths: Any, time_major: bool) -> Tensor:
    """Each sequence reversed within its length (TF's ``reverse_sequence``)."""
    x = x.transpose(0, 1) if time_major else x
    steps = x.shape[1]
    idx = torch.arange(steps, device=x.device).expand(x.shape[0], steps)
    if lengths is not None:
        n = torch.as_tensor(lengths, device=x.device)[:, None]
        idx = torch.where(idx < n, n - 1 - idx, idx)
    else:
        idx = steps - 1 - idx
    out = x.gather(1, idx[..., None].expand_as(x))
    return out.transpose(0, 1) if time_major else out


def _build(cell: Any, x: Tensor, name: str) -> None:
    size = x.shape[-1]
    for layer in _layers(cell, name):
        layer.build(size, x.dtype, x.device)
        if layer.built_cell.weight_ih.dtype != x.dtype:
            raise TypeError(
                f"inputs: expected dtype {layer.built_cell.weight_ih.dtype} (the dtype {name} "
                f"was built with), got {x.dtype}"
            )
        size = layer.output_size


def _record_scope(cell: Any, scope: str) -> None:
    if cell.tf_scope not in (None, scope):
        raise ValueError(
            f"cell: already ran under scope {cell.tf_scope!r}; TF would create new "
            f"variables under {scope!r}, but a cell owns one set of weights. Build a "
            f"new cell for this dynamic_rnn"
        )
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
        if cell.state_is_tuple and (
            not isinstance(state, (tuple, list)) or isinstance(state, LSTMStateTuple)
        ):
            raise TypeError(
                f"initial_state: expected one state per layer of the MultiRNNCell "
                f"({len(cell.cells)}), got {type(state).__name__}"
            )
        state = split_layers(cell, state)
        # extra or missing layers pass on as they are: the stack's initial_state check names them
        layers = zip(cell.cells, state, strict=False)
        return tuple(_layer_state(layer, s) for layer, s in layers) + tuple(
            state[len(cell.cells) :]
        )
    return (_layer_state(cell, state),)


def _from_stack_state(cell: Any, state: tuple) -> Any:
    if isinstance(cell, MultiRNNCell):
        layers = tuple(tf_layer_state(layer, s) for layer, s in zip(cell.cells, state, strict=True))
        return layers if cell.state_is_tuple else join_layers(cell, layers)
    return tf_layer_state(cell, state[0])
