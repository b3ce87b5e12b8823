"""TensorFlow 1 checkpoints → rnnfuse stacks (and rnnfuse stacks → TF1 variable names).

:func:`load_stack` reads a checkpoint, finds the cells under a scope
(:mod:`rnnfuse.interop.tf1_names` reads names and shapes) and converts the weights.  A TF
kernel acts on ``concat([x, h])``, so ``weight_ih = kernel[:in].T`` and
``weight_hh = kernel[in:].T``; LSTM gates are reordered from TF's i, j, f, o to rnnfuse's
i, f, g, o; a TF ``GRUCell`` becomes ``GRUCell(reset_after=False)`` (reset before the
matmul, as TF1 computes it) with ``gates`` (r, u) and ``candidate`` stacked as r, z, n.

What a checkpoint does not store comes from the caller: ``forget_bias``, ``cell_clip``,
``proj_clip`` and the activation.  Activations: tanh (TF's default) for every cell;
``activation="relu"`` is accepted when every cell is a ``BasicRNNCell``.  Other TF
activations are not supported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_lengths
from ..cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from ..kernels import reverse_within_lengths
from ..stack import StackedRNN
from .tf1_checkpoint import read_checkpoint
from .tf1_names import (PEEPHOLES, TF1VariableError, TFBidirectional, TFLayer, TFStack, parse_scope,
                        variable_shapes)

__all__ = [
    "BidirectionalRNN", "TF1VariableError", "load_stack", "stack_from_variables", "layer_arrays",
    "initial_values", "make_cell", "check_layers", "copy_arrays", "tf_cell_name", "cell_to_tf",
    "stack_to_tf",
]

_LSTM_TF_ORDER = [0, 2, 1, 3]  # i, j, f, o <-> i, f, g(=j), o (its own inverse)


def _blocks(a: np.ndarray, order: list[int], axis: int) -> np.ndarray:
    return np.concatenate([np.split(a, len(order), axis=axis)[i] for i in order], axis=axis)


def layer_arrays(layer: TFLayer, variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The layer's TF variables converted to rnnfuse parameter names and layouts."""
    v = {}
    for role, name in layer.variables.items():
        value = np.asarray(variables[name])
        if value.dtype.kind != "f":
            raise TF1VariableError(f"{name}: expected a floating-point variable, got dtype {value.dtype}")
        v[role] = value
    n = layer.input_size
    if layer.cell_type == "GRUCell":
        gates, cand = v["gates/kernel"], v["candidate/kernel"]
        out = {"weight_ih": np.concatenate([gates[:n], cand[:n]], 1).T,
               "weight_hh": np.concatenate([gates[n:], cand[n:]], 1).T,
               "bias": np.concatenate([v["gates/bias"], v["candidate/bias"]])}
    elif layer.cell_type == "BasicRNNCell":
        out = {"weight_ih": v["kernel"][:n].T, "weight_hh": v["kernel"][n:].T, "bias": v["bias"]}
    else:
        kernel = _blocks(v["kernel"], _LSTM_TF_ORDER, 1)
        out = {"weight_ih": kernel[:n].T, "weight_hh": kernel[n:].T,
               "bias": _blocks(v["bias"], _LSTM_TF_ORDER, 0)}
        out.update({role: v[role] for role in PEEPHOLES if role in v})
        if "projection/kernel" in v:
            out["weight_hr"] = v["projection/kernel"].T
    return {k: np.ascontiguousarray(a) for k, a in out.items()}


def initial_values(layer: TFLayer, dtype: torch.dtype) -> dict[str, np.ndarray]:
    """TF's defaults: Glorot-uniform kernels and peepholes, zero biases, GRU gates/bias 1.

    Drawn from torch's generator (``torch.manual_seed`` makes them repeatable).
    """
    values = {}
    for role, shape in variable_shapes(layer).items():
        if role.endswith("bias"):
            values[role] = np.full(shape, 1.0 if role == "gates/bias" else 0.0)
        else:  # TF's fans: the two dimensions of a matrix, the length twice for a vector
            limit = (6.0 / (shape[0] + shape[-1])) ** 0.5
            values[role] = torch.empty(shape, dtype=dtype).uniform_(-limit, limit).double().numpy()
    return values


def make_cell(layer: TFLayer, *, forget_bias: float = 1.0, cell_clip: float | None = None,
              proj_clip: float | None = None, activation: str = "tanh") -> RecurrentCell:
    """An untrained rnnfuse cell with the layer's sizes and the given run-time options."""
    if layer.cell_type == "GRUCell":
        return GRUCell(layer.input_size, layer.num_units, reset_after=False)
    if layer.cell_type == "BasicRNNCell":
        return RNNCell(layer.input_size, layer.num_units, nonlinearity=activation)
    full = layer.cell_type == "LSTMCell"
    return LSTMCell(layer.input_size, layer.num_units, forget_bias=forget_bias,
                    peepholes=layer.use_peepholes, proj_size=layer.num_proj,
                    cell_clip=cell_clip if full else None,
                    proj_clip=proj_clip if layer.num_proj else None)


def copy_arrays(cell: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy converted arrays into ``cell``'s parameters (same names and shapes)."""
    with torch.no_grad():
        for name, value in arrays.items():
            param = getattr(cell, name)
            param.copy_(torch.from_numpy(value).to(param.dtype))


def check_layers(wanted: Sequence[TFLayer], count: int, multi: bool, tf_stack: TFStack) -> None:
    """Raise ``ValueError`` listing how a model (``count`` layers, the first ones ``wanted``,
    a MultiRNNCell if ``multi``) differs from a checkpoint's stack."""
    problems = []
    if multi != tf_stack.multi:
        kinds = {True: "a MultiRNNCell", False: "one cell"}
        problems.append(f"the model is {kinds[multi]}, the checkpoint holds {kinds[tf_stack.multi]} "
                        f"under {tf_stack.scope!r}")
    if count != len(tf_stack.layers):
        problems.append(f"the model has {count} layers, the checkpoint {len(tf_stack.layers)}")
    for k, (mine, theirs) in enumerate(zip(wanted, tf_stack.layers)):
        if mine[1:6] != theirs[1:6]:
            problems.append(f"layer {k}: the model has {_describe(mine)}, the checkpoint has "
                            f"{_describe(theirs)} at {theirs.path}")
    if problems:
        raise ValueError("restore: the checkpoint does not match the model:\n  " + "\n  ".join(problems))


def _describe(layer: TFLayer) -> str:
    extra = (", use_peepholes=True" if layer.use_peepholes else "") + (
        f", num_proj={layer.num_proj}" if layer.num_proj else "")
    return f"{layer.cell_type}(num_units={layer.num_units}{extra}) reading {layer.input_size} features"


def _check_options(layers: list[TFLayer], scope: str, cell_clip: Any, proj_clip: Any,
                   activation: str) -> None:
    if cell_clip is not None and not any(lay.cell_type == "LSTMCell" for lay in layers):
        raise ValueError(f"cell_clip: only TF's LSTMCell (lstm_cell) clips its cell state; the "
                         f"RNN under {scope!r} has none, its cells are {[lay.cell_type for lay in layers]}")
    if proj_clip is not None and not any(lay.num_proj for lay in layers):
        raise ValueError(f"proj_clip: clips a projection, and no cell under {scope!r} has "
                         f"projection/kernel")
    if activation not in ("tanh", "relu"):
        raise ValueError(f"activation: expected 'tanh' or 'relu', got {activation!r}")
    if activation == "relu" and any(lay.cell_type != "BasicRNNCell" for lay in layers):
        raise ValueError(f"activation: 'relu' needs every cell to be a BasicRNNCell (rnnfuse's LSTM "
                         f"and GRU use tanh); under {scope!r}: {[lay.cell_type for lay in layers]}")


def stack_from_variables(variables: Mapping[str, np.ndarray], scope: str = "rnn", *,
                         batch_first: bool = True, forget_bias: float = 1.0,
                         cell_clip: float | None = None, proj_clip: float | None = None,
                         activation: str = "tanh", ignore: Iterable[str] = ()) -> Any:
    """:func:`load_stack` from a ``{tf_name: ndarray}`` dict instead of a checkpoint."""
    parsed = parse_scope(variables, scope, ignore)
    stacks = [parsed.fw, parsed.bw] if isinstance(parsed, TFBidirectional) else [parsed]
    layers = [lay for s in stacks for lay in s.layers]
    _check_options(layers, parsed.scope, cell_clip, proj_clip, activation)
    built = []
    for tf_stack in stacks:
        cells = []
        for layer in tf_stack.layers:
            arrays = layer_arrays(layer, variables)
            cell = make_cell(layer, forget_bias=forget_bias, cell_clip=cell_clip,
                             proj_clip=proj_clip, activation=activation)
            cell = cell.to(torch.from_numpy(arrays["weight_ih"]).dtype)
            copy_arrays(cell, arrays)
            cells.append(cell)
        built.append(StackedRNN.from_cells(cells, batch_first=batch_first))
    return BidirectionalRNN(*built) if len(built) == 2 else built[0]


def load_stack(prefix: str | os.PathLike[str] | Mapping[str, np.ndarray], scope: str = "rnn", *,
               batch_first: bool = True, forget_bias: float = 1.0,
               cell_clip: float | None = None, proj_clip: float | None = None,
               activation: str = "tanh", ignore: Iterable[str] = ()) -> Any:
    """The RNN that TF1's ``dynamic_rnn`` ran under ``scope``, from a checkpoint.

    Returns a :class:`~rnnfuse.StackedRNN`, or a :class:`BidirectionalRNN` for a
    ``bidirectional_dynamic_rnn`` scope; it gives TF's numbers for the same inputs,
    ``lengths`` (TF's ``sequence_length``) and ``initial_state``.  ``batch_first=False`` is
    TF's ``time_major=True``.  ``forget_bias`` (every LSTM layer), ``cell_clip`` (``LSTMCell``
    layers) and ``proj_clip`` (layers with a projection) are not stored by TF: pass what the
    model was built with.  Every variable under ``scope`` must be used (``ignore`` takes
    glob patterns of full names to leave out, e.g. ``["*/Adam", "*/Adam_1"]``); anything
    missing, left over or of the wrong shape raises :class:`TF1VariableError` listing it.

    >>> stack = load_stack("tests/fixtures/tf1/seed_multi_lstm/model", batch_first=False)
    >>> [type(c).__name__ for c in stack.layers], stack.hidden_sizes
    (['LSTMCell', 'LSTMCell'], (8, 5))
    """
    variables = prefix if isinstance(prefix, Mapping) else read_checkpoint(prefix)
    return stack_from_variables(variables, scope, batch_first=batch_first, forget_bias=forget_bias,
                                cell_clip=cell_clip, proj_clip=proj_clip, activation=activation,
                                ignore=ignore)


# ----------------------------------------------------------------------- rnnfuse -> TF names
def tf_cell_name(cell: RecurrentCell) -> str:
    """The TF1 cell whose variables ``cell`` maps to."""
    if isinstance(cell, LSTMCell):
        plain = not (cell.peepholes or cell.proj_size or cell.cell_clip)
        return "basic_lstm_cell" if plain else "lstm_cell"
    return "gru_cell" if isinstance(cell, GRUCell) else "basic_rnn_cell"


def cell_to_tf(cell: RecurrentCell) -> dict[str, Tensor]:
    """``cell``'s parameters as TF1 variables, by role (``kernel``, ``gates/bias``, ...)."""
    w_ih, w_hh = cell.weight_ih.detach(), cell.weight_hh.detach()
    if isinstance(cell, GRUCell):
        if cell.reset_after:
            raise ValueError("cell: TF1's GRUCell resets before the hidden matmul; this GRUCell "
                             "has reset_after=True, which TF1 cannot express")
        h2 = 2 * cell.hidden_size
        bias = cell.bias.detach()
        return {"gates/kernel": torch.cat([w_ih[:h2].T, w_hh[:h2].T]), "gates/bias": bias[:h2],
                "candidate/kernel": torch.cat([w_ih[h2:].T, w_hh[h2:].T]), "candidate/bias": bias[h2:]}
    kernel = torch.cat([w_ih.T, w_hh.T])
    if not isinstance(cell, LSTMCell):
        return {"kernel": kernel, "bias": cell.bias.detach()}
    order = torch.tensor(_LSTM_TF_ORDER)
    out = {"kernel": kernel.reshape(kernel.shape[0], 4, -1)[:, order].reshape(kernel.shape),
           "bias": cell.bias.detach().reshape(4, -1)[order].reshape(-1)}
    if cell.peepholes:
        out.update({role: getattr(cell, role).detach() for role in PEEPHOLES})
    if cell.proj_size is not None:
        out["projection/kernel"] = cell.weight_hr.detach().T
    return out


def stack_to_tf(module: nn.Module, scope: str | None = None, *, multi: bool | None = None,
                cell_names: list[str] | None = None) -> dict[str, np.ndarray]:
    """The ``{tf_name: ndarray}`` TF1 would hold for ``module`` (inverse of load_stack).

    ``multi`` (default: more than one layer) names layers ``multi_rnn_cell/cell_<i>``.
    """
    if isinstance(module, BidirectionalRNN):
        scope = scope or "bidirectional_rnn"
        return {**stack_to_tf(module.fw, f"{scope}/fw", multi=multi),
                **stack_to_tf(module.bw, f"{scope}/bw", multi=multi)}
    if not isinstance(module, StackedRNN) or module.bidirectional:
        what = "a bidirectional StackedRNN" if isinstance(module, StackedRNN) else type(module).__name__
        raise TypeError(f"module: expected a unidirectional StackedRNN or a BidirectionalRNN, got {what}")
    scope = scope or "rnn"
    multi = module.num_layers > 1 if multi is None else multi
    out = {}
    for k, cell in enumerate(module.layers):
        name = cell_names[k] if cell_names else tf_cell_name(cell)
        path = f"{scope}/multi_rnn_cell/cell_{k}/{name}" if multi else f"{scope}/{name}"
        out.update({f"{path}/{role}": t.cpu().numpy() for role, t in cell_to_tf(cell).items()})
    return out


# ----------------------------------------------------------------------- bidirectional
class BidirectionalRNN(nn.Module):
    """TF1's ``bidirectional_dynamic_rnn``: two independent stacks, ``fw`` and ``bw``.

    The backward stack reads each sequence reversed within its length; its outputs are
    reversed back.  ``forward`` returns ``(cat([out_fw, out_bw], -1), (fw_state, bw_state))``;
    :meth:`forward_split` returns TF's ``((out_fw, out_bw), (fw_state, bw_state))``.
    (:class:`~rnnfuse.StackedRNN` with ``bidirectional=True`` instead feeds fw|bw of layer k
    into layer k+1.)
    """

    def __init__(self, fw: StackedRNN, bw: StackedRNN) -> None:
        super().__init__()
        for name, stack in (("fw", fw), ("bw", bw)):
            if not isinstance(stack, StackedRNN) or stack.bidirectional:
                raise TypeError(f"{name}: expected a unidirectional StackedRNN, got {type(stack).__name__}")
        if fw.input_size != bw.input_size or fw.batch_first != bw.batch_first:
            raise ValueError(f"bw: expected input_size={fw.input_size}, batch_first={fw.batch_first} "
                             f"like fw, got {bw.input_size}, {bw.batch_first}")
        self.fw, self.bw = fw, bw

    @property
    def batch_first(self) -> bool:
        return self.fw.batch_first

    @property
    def input_size(self) -> int:
        return self.fw.input_size

    @property
    def output_size(self) -> int:
        return self.fw.output_size + self.bw.output_size

    @property
    def state_sizes(self) -> Any:
        return self.fw.state_sizes, self.bw.state_sizes

    def initial_state(self, batch_size: int, device: Any = None, dtype: Any = None) -> Any:
        return (self.fw.initial_state(batch_size, device, dtype),
                self.bw.initial_state(batch_size, device, dtype))

    def forward_split(self, x: Tensor, lengths: Any = None,
                      initial_state: Any = None) -> tuple[tuple[Tensor, Tensor], Any]:
        """TF's return value: ``((out_fw, out_bw), (fw_state, bw_state))``."""
        if initial_state is None:
            initial_state = (None, None)
        elif not (isinstance(initial_state, (tuple, list)) and len(initial_state) == 2):
            raise TypeError("initial_state: expected a (fw_state, bw_state) pair, got "
                            f"{type(initial_state).__name__}")
        out_fw, st_fw = self.fw(x, lengths, initial_state[0])
        time_axis = 1 if self.batch_first else 0
        lens = check_lengths(lengths, x.shape[1 - time_axis], x.shape[time_axis], x.device)
        out_bw, st_bw = self.bw(self._reverse(x, lens), lengths, initial_state[1])
        return (out_fw, self._reverse(out_bw, lens)), (st_fw, st_bw)

    def forward(self, x: Tensor, lengths: Any = None, initial_state: Any = None) -> tuple[Tensor, Any]:
        (out_fw, out_bw), state = self.forward_split(x, lengths, initial_state)
        return torch.cat([out_fw, out_bw], dim=-1), state

    def _reverse(self, x: Tensor, lens: Tensor | None) -> Tensor:
        if self.batch_first:
            return reverse_within_lengths(x, lens)
        return reverse_within_lengths(x.transpose(0, 1), lens).transpose(0, 1)
