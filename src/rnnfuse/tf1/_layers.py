"""TF1 cells <-> rnnfuse cells, one layer at a time (private to :mod:`rnnfuse.tf1`).

A TF kernel acts on ``concat([x, h])``, so ``weight_ih = kernel[:in].T`` and
``weight_hh = kernel[in:].T``; LSTM gates are reordered from TF's i, j, f, o to rnnfuse's
i, f, g, o (``rnnfuse.convert._params``); a TF ``GRUCell`` becomes
``GRUCell(reset_after=False)`` (reset before the matmul, as TF1 computes it) with ``gates``
(r, u) and ``candidate`` stacked as r, z, n.  Used by :mod:`rnnfuse.tf1.convert` and the
facade (:mod:`rnnfuse.tf1.cells`, :mod:`rnnfuse.tf1.run`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from ..convert._params import copy_params, from_rnnfuse_gates, to_rnnfuse_gates
from .names import PEEPHOLES, TF1VariableError, TFLayer, TFStack, variable_shapes


def layer_arrays(layer: TFLayer, variables: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The layer's TF variables converted to rnnfuse parameter names and layouts."""
    v = {}
    for role, name in layer.variables.items():
        value = np.asarray(variables[name])
        if value.dtype.kind != "f":
            raise TF1VariableError(
                f"{name}: expected a floating-point variable, got dtype {value.dtype}"
            )
        v[role] = value
    n = layer.input_size
    if layer.cell_type == "GRUCell":
        gates, cand = v["gates/kernel"], v["candidate/kernel"]
        out = {
            "weight_ih": np.concatenate([gates[:n], cand[:n]], 1).T,
            "weight_hh": np.concatenate([gates[n:], cand[n:]], 1).T,
            "bias": np.concatenate([v["gates/bias"], v["candidate/bias"]]),
        }
    elif layer.cell_type == "BasicRNNCell":
        out = {"weight_ih": v["kernel"][:n].T, "weight_hh": v["kernel"][n:].T, "bias": v["bias"]}
    else:
        kernel = to_rnnfuse_gates(v["kernel"], "tf1", "lstm", 1)
        out = {
            "weight_ih": kernel[:n].T,
            "weight_hh": kernel[n:].T,
            "bias": to_rnnfuse_gates(v["bias"], "tf1", "lstm", 0),
        }
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


def make_cell(
    layer: TFLayer,
    *,
    forget_bias: float = 1.0,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    activation: str = "tanh",
) -> RecurrentCell:
    """An untrained rnnfuse cell with the layer's sizes and the given run-time options
    (``activation``: TF's cell option, the candidate's and, in an LSTM, ``c``'s before the
    output gate; the gates stay sigmoid)."""
    if layer.cell_type == "GRUCell":
        return GRUCell(layer.input_size, layer.num_units, reset_after=False, activation=activation)
    if layer.cell_type == "BasicRNNCell":
        return RNNCell(layer.input_size, layer.num_units, nonlinearity=activation)
    full = layer.cell_type == "LSTMCell"
    return LSTMCell(
        layer.input_size,
        layer.num_units,
        forget_bias=forget_bias,
        peepholes=layer.use_peepholes,
        proj_size=layer.num_proj,
        cell_clip=cell_clip if full else None,
        proj_clip=proj_clip if layer.num_proj else None,
        activation=activation,
    )


def load_layer(cell: RecurrentCell, layer: TFLayer, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy ``layer``'s converted ``arrays`` into ``cell``, checking names and shapes."""
    copy_params(cell, arrays, f"cell {layer.path!r}")


def check_layers(wanted: Sequence[TFLayer], count: int, multi: bool, tf_stack: TFStack) -> None:
    """Raise ``ValueError`` listing how a model (``count`` layers, the first ones ``wanted``,
    a MultiRNNCell if ``multi``) differs from a checkpoint's stack."""
    problems = []
    if multi != tf_stack.multi:
        kinds = {True: "a MultiRNNCell", False: "one cell"}
        problems.append(
            f"the model is {kinds[multi]}, the checkpoint holds {kinds[tf_stack.multi]} "
            f"under {tf_stack.scope!r}"
        )
    if count != len(tf_stack.layers):
        problems.append(f"the model has {count} layers, the checkpoint {len(tf_stack.layers)}")
    # the layers both have: a different count is reported above
    for k, (mine, theirs) in enumerate(zip(wanted, tf_stack.layers, strict=False)):
        if mine[1:6] != theirs[1:6]:
            problems.append(
                f"layer {k}: the model has {_describe(mine)}, the checkpoint has "
                f"{_describe(theirs)} at {theirs.path}"
            )
    if problems:
        raise ValueError(
            "restore: the checkpoint does not match the model:\n  " + "\n  ".join(problems)
        )


def _describe(layer: TFLayer) -> str:
    extra = (", use_peepholes=True" if layer.use_peepholes else "") + (
        f", num_proj={layer.num_proj}" if layer.num_proj else ""
    )
    return (
        f"{layer.cell_type}(num_units={layer.num_units}{extra}) reading {layer.input_size} features"
    )


# ----------------------------------------------------------------------- rnnfuse -> TF
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
            raise ValueError(
                "cell: TF1's GRUCell resets before the hidden matmul; this GRUCell "
                "has reset_after=True, which TF1 cannot express"
            )
        h2 = 2 * cell.hidden_size
        bias = cell.bias_or_zeros(cell.bias, 3 * cell.hidden_size, w_ih.dtype, w_ih.device).detach()
        return {
            "gates/kernel": torch.cat([w_ih[:h2].T, w_hh[:h2].T]),
            "gates/bias": bias[:h2],
            "candidate/kernel": torch.cat([w_ih[h2:].T, w_hh[h2:].T]),
            "candidate/bias": bias[h2:],
        }
    kernel = torch.cat([w_ih.T, w_hh.T])
    bias = cell.bias_or_zeros(cell.bias, w_ih.shape[0], w_ih.dtype, w_ih.device).detach().clone()  # type: ignore[arg-type]  # LSTMCell or RNNCell: both declare bias
    if not isinstance(cell, LSTMCell):
        return {"kernel": kernel, "bias": bias}
    out = {
        "kernel": from_rnnfuse_gates(kernel, "tf1", "lstm", 1),
        "bias": from_rnnfuse_gates(bias, "tf1", "lstm", 0),
    }
    if cell.peepholes:
        out.update({role: getattr(cell, role).detach() for role in PEEPHOLES})
    if cell.proj_size is not None:
        out["projection/kernel"] = cell.weight_hr.detach().T
    return out
