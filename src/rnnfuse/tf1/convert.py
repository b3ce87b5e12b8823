"""TensorFlow 1 checkpoints -> rnnfuse stacks, and rnnfuse stacks -> TF1 variables.

:func:`load_stack` reads a checkpoint, finds the cells under a scope
(:mod:`rnnfuse.tf1.names` reads names and shapes) and converts the weights, layer by
layer.  :func:`stack_to_tf` is the inverse: the ``{tf_name: array}`` TF1 would hold.

What a checkpoint does not store comes from the caller: ``forget_bias``, ``cell_clip``,
``proj_clip`` and the activation (TF's cells' ``activation=``, one for every layer:
``"tanh"``, TF's default, or a name of :mod:`rnnfuse.cells.activations` such as ``"relu"``,
``"softsign"``, ``"elu"``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..bidirectional import BidirectionalRNN
from ..cells.activations import check_activation
from ..stack import StackedRNN
from ._layers import cell_to_tf, layer_arrays, load_layer, make_cell, tf_cell_name
from .checkpoint import read_checkpoint
from .names import TF1VariableError, TFBidirectional, TFLayer, TFStackBidirectional, parse_scope
from .skip import split

_log = logging.getLogger("rnnfuse.tf1")

__all__ = [
    "TF1VariableError",
    "load_stack",
    "stack_from_variables",
    "stack_to_tf",
    "model_variables",
]


def load_stack(
    prefix: str | os.PathLike[str] | Mapping[str, np.ndarray],
    scope: str | Sequence[str] = "rnn",
    *,
    batch_first: bool = True,
    forget_bias: float | Sequence[float] = 1.0,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    activation: str = "tanh",
    ignore: Iterable[str] = (),
    use_ema: bool = False,
    residual: bool | Sequence[bool] = False,
    cell_types: Mapping[str, str] | None = None,
) -> Any:
    """The RNN that TF1's ``dynamic_rnn`` ran under ``scope``, from a checkpoint.

    Returns a :class:`~rnnfuse.StackedRNN`, or a :class:`BidirectionalRNN` for a
    ``bidirectional_dynamic_rnn`` scope, or a bidirectional :class:`~rnnfuse.StackedRNN` for a
    ``stack_bidirectional_dynamic_rnn`` scope (``forward(x, lengths)`` gives
    ``(outputs, state)``, ``state`` one ``BidirectionalState(fw, bw)`` per layer); it gives
    TF's numbers for the same inputs,
    ``lengths`` (TF's ``sequence_length``) and ``initial_state``.  ``batch_first=False`` is
    TF's ``time_major=True``.  ``forget_bias`` (every LSTM layer, or a sequence with one value
    per layer: the layers of the returned stack bottom first, both directions of a bidirectional
    layer sharing one; for a ``bidirectional_dynamic_rnn`` the fw layers then the bw layers;
    values of GRU/RNN layers are not used), ``cell_clip`` (``LSTMCell``
    layers) and ``proj_clip`` (layers with a projection) are not stored by TF: pass what the
    model was built with.  Every variable under ``scope`` must be used (``ignore`` takes
    glob patterns of full names to leave out, e.g. ``["*/my_slot"]``); anything missing,
    left over or of the wrong shape raises :class:`TF1VariableError` listing it.  A cell built
    with ``name=`` is read by its variables; where their shapes fit two kinds, ``cell_types``
    names it (``{"cell0": "LSTMCell"}``, see :func:`rnnfuse.tf1.names.parse_scope`).

    What training leaves in a checkpoint is skipped (:mod:`rnnfuse.tf1.skip`): optimizer
    slots (``<var>/Adam``, ``<var>/Momentum``, ...), ``beta1_power``, ``global_step`` and
    ``ExponentialMovingAverage`` shadows; the ``rnnfuse.tf1`` logger says what at INFO level.
    ``use_ema=True`` loads each ``<var>/ExponentialMovingAverage`` shadow instead of
    ``<var>`` (as TF's ``ema.variables_to_restore()``).

    A list of scopes stacks RNNs that fed each other into one :class:`~rnnfuse.StackedRNN`,
    a ``bidirectional_dynamic_rnn`` of one cell a side becoming a bidirectional layer (its
    ``[fw, bw]`` outputs feed the next): GNMT's encoder is
    ``load_stack(prefix, scopes, residual=[False, False, True])`` with
    ``scopes = ["encoder/bidirectional_rnn", "encoder/rnn"]`` (its state:
    ``(BidirectionalState(fw, bw), uni_0, uni_1)``).  ``residual`` (per layer,
    or a bool: every layer but the first) adds a layer's input to its output, as
    ``ResidualWrapper``; TF stores no trace of it, so it comes from the caller.

    >>> stack = load_stack("tests/fixtures/tf1/seed_multi_lstm/model", batch_first=False)
    >>> [type(c).__name__ for c in stack.layers], stack.hidden_sizes
    (['LSTMCell', 'LSTMCell'], (8, 5))
    """
    variables = prefix if isinstance(prefix, Mapping) else read_checkpoint(prefix)
    return stack_from_variables(
        variables,
        scope,
        batch_first=batch_first,
        forget_bias=forget_bias,
        cell_clip=cell_clip,
        proj_clip=proj_clip,
        activation=activation,
        ignore=ignore,
        use_ema=use_ema,
        residual=residual,
        cell_types=cell_types,
    )


def model_variables(
    variables: Mapping[str, np.ndarray], scope: str, use_ema: bool = False
) -> dict[str, np.ndarray]:
    """``variables`` without optimizer slots, counters and EMA shadows (logged at INFO);
    with ``use_ema`` the shadows' values in place of the raw ones."""
    kept, skipped = split(variables, use_ema, scope if isinstance(scope, str) else None)
    if skipped:
        _log.info("TF1 checkpoint: skipped %s", skipped.summary())
    return kept


def stack_from_variables(
    variables: Mapping[str, np.ndarray],
    scope: str | Sequence[str] = "rnn",
    *,
    batch_first: bool = True,
    forget_bias: float | Sequence[float] = 1.0,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    activation: str = "tanh",
    ignore: Iterable[str] = (),
    use_ema: bool = False,
    residual: bool | Sequence[bool] = False,
    cell_types: Mapping[str, str] | None = None,
) -> Any:
    """:func:`load_stack` from a ``{tf_name: ndarray}`` dict instead of a checkpoint."""
    ignore = [ignore] if isinstance(ignore, str) else list(ignore)
    options: dict[str, Any] = dict(
        forget_bias=forget_bias, cell_clip=cell_clip, proj_clip=proj_clip, activation=activation
    )
    if not isinstance(scope, str):  # several RNNs feeding each other: one stack
        if isinstance(scope, Mapping) or not isinstance(scope, Sequence) or not scope:
            raise TypeError(
                f"scope: expected a scope name or a non-empty list of them, got {scope!r}"
            )
        for one in scope:
            variables = model_variables(variables, one, use_ema)
        pairs = [
            pair
            for one in scope
            for pair in _chained(parse_scope(variables, one, ignore, cell_types))
        ]
        return _stack(pairs, variables, options, batch_first, residual, ", ".join(scope))
    variables = model_variables(variables, scope, use_ema)
    parsed = parse_scope(variables, scope, ignore, cell_types)
    if isinstance(parsed, TFStackBidirectional) or residual is not False:
        if isinstance(parsed, TFBidirectional):
            raise ValueError(
                f"residual: a bidirectional_dynamic_rnn ({parsed.scope!r}) runs two "
                f"independent stacks without residual connections"
            )
        return _stack(_chained(parsed), variables, options, batch_first, residual, parsed.scope)
    stacks = [parsed.fw, parsed.bw] if isinstance(parsed, TFBidirectional) else [parsed]
    layers = [lay for s in stacks for lay in s.layers]
    _check_options(layers, parsed.scope, cell_clip, proj_clip, activation)
    biases = iter(forget_biases(forget_bias, len(layers), parsed.scope))
    built = []
    for tf_stack in stacks:
        cells = [
            _cell(layer, variables, {**options, "forget_bias": next(biases)})
            for layer in tf_stack.layers
        ]
        built.append(StackedRNN.from_cells(cells, batch_first=batch_first))
    return BidirectionalRNN(*built) if len(built) == 2 else built[0]


def _chained(parsed: Any) -> list[tuple[TFLayer, TFLayer | None]]:
    """The layers of a parsed scope as ``(fw, bw or None)``, to stack on each other."""
    if isinstance(parsed, TFStackBidirectional):
        return [(bi.fw.layers[0], bi.bw.layers[0]) for bi in parsed.layers]
    if isinstance(parsed, TFBidirectional):
        if len(parsed.fw.layers) != 1 or len(parsed.bw.layers) != 1:
            raise TF1VariableError(
                f"scope: {parsed.scope!r} is a bidirectional_dynamic_rnn of MultiRNNCells (two "
                f"independent stacks); in a list of scopes each side must be one cell (one "
                f"bidirectional layer, its [fw, bw] outputs feeding the next scope)"
            )
        return [(parsed.fw.layers[0], parsed.bw.layers[0])]
    return [(layer, None) for layer in parsed.layers]


def _stack(
    pairs: list[tuple[TFLayer, TFLayer | None]],
    variables: Mapping[str, np.ndarray],
    options: dict[str, Any],
    batch_first: bool,
    residual: Any,
    scope: str,
) -> StackedRNN:
    layers = [lay for pair in pairs for lay in pair if lay is not None]
    _check_options(layers, scope, options["cell_clip"], options["proj_clip"], options["activation"])
    biases = forget_biases(options["forget_bias"], len(pairs), scope)
    per_layer = [{**options, "forget_bias": bias} for bias in biases]
    fw = [_cell(f, variables, o) for (f, _), o in zip(pairs, per_layer, strict=True)]
    bw = [
        None if b is None else _cell(b, variables, o)
        for (_, b), o in zip(pairs, per_layer, strict=True)
    ]
    return StackedRNN.from_cells(
        fw,
        backward_cells=bw if any(c is not None for c in bw) else None,
        batch_first=batch_first,
        residual=residual,
    )


def _cell(layer: TFLayer, variables: Mapping[str, np.ndarray], options: dict[str, Any]) -> Any:
    arrays = layer_arrays(layer, variables)
    cell = make_cell(layer, **options).to(torch.from_numpy(arrays["weight_ih"]).dtype)
    load_layer(cell, layer, arrays)
    return cell


def forget_biases(forget_bias: float | Sequence[float], count: int, scope: str) -> list[float]:
    """One forget bias per layer: ``forget_bias`` repeated, or checked to hold ``count`` numbers."""
    if isinstance(forget_bias, (int, float)) and not isinstance(forget_bias, bool):
        values = [float(forget_bias)] * count
    elif isinstance(forget_bias, Sequence) and not isinstance(forget_bias, str):
        values = list(forget_bias)
        if len(values) != count or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise ValueError(
                f"forget_bias: expected a number or {count} numbers (one per layer of "
                f"{scope!r}, bottom first), got {forget_bias!r}"
            )
        values = [float(v) for v in values]
    else:
        raise TypeError(
            f"forget_bias: expected a number or a sequence of numbers, got "
            f"{type(forget_bias).__name__}"
        )
    if not all(np.isfinite(values)):
        raise ValueError(f"forget_bias: expected finite numbers, got {forget_bias!r}")
    return values


def _check_options(
    layers: list[TFLayer], scope: str, cell_clip: Any, proj_clip: Any, activation: str
) -> None:
    if cell_clip is not None and not any(lay.cell_type == "LSTMCell" for lay in layers):
        raise ValueError(
            f"cell_clip: only TF's LSTMCell (lstm_cell) clips its cell state; the "
            f"RNN under {scope!r} has none, its cells are {[lay.cell_type for lay in layers]}"
        )
    if proj_clip is not None and not any(lay.num_proj for lay in layers):
        raise ValueError(
            f"proj_clip: clips a projection, and no cell under {scope!r} has projection/kernel"
        )
    check_activation("activation", activation)


def stack_to_tf(
    module: nn.Module,
    scope: str | None = None,
    *,
    multi: bool | None = None,
    cell_names: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """The ``{tf_name: ndarray}`` TF1 would hold for ``module`` (inverse of load_stack).

    ``multi`` (default: more than one layer) names layers ``multi_rnn_cell/cell_<i>``.
    """
    if isinstance(module, BidirectionalRNN):
        scope = scope or "bidirectional_rnn"
        return {
            **stack_to_tf(module.fw, f"{scope}/fw", multi=multi),
            **stack_to_tf(module.bw, f"{scope}/bw", multi=multi),
        }
    if not isinstance(module, StackedRNN) or any(module.bidirectional):
        what = (
            "a bidirectional StackedRNN"
            if isinstance(module, StackedRNN)
            else type(module).__name__
        )
        raise TypeError(
            f"module: expected a unidirectional StackedRNN or a BidirectionalRNN, got {what}"
        )
    scope = scope or "rnn"
    multi = module.num_layers > 1 if multi is None else multi
    out = {}
    for k, cell in enumerate(module.layers):
        name = cell_names[k] if cell_names else tf_cell_name(cell)
        path = f"{scope}/multi_rnn_cell/cell_{k}/{name}" if multi else f"{scope}/{name}"
        out.update({f"{path}/{role}": t.cpu().numpy() for role, t in cell_to_tf(cell).items()})
    return out
