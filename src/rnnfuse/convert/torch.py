"""Conversion between rnnfuse cells and ``torch.nn.LSTM``/``GRU``/``RNN``, layer by layer.

PyTorch names its weights ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` and ``weight_hr_l{k}`` (projection).  Its gate orders
(LSTM i, f, g, o; GRU r, z, n) are the ones rnnfuse uses, so weights copy over unchanged;
the LSTM's and RNN's two biases add into rnnfuse's one ``bias``.

This module works on cells, not stacks, so that :mod:`rnnfuse.stack` can import it
(:meth:`StackedRNN.from_torch <rnnfuse.StackedRNN.from_torch>` and
:meth:`~rnnfuse.StackedRNN.to_torch` are the user-facing entry points).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from torch import nn

from ..cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from ._params import copy_params, from_rnnfuse_gates, to_rnnfuse_gates

__all__ = ["TorchCells", "cells_from_torch", "torch_from_cells"]

_TORCH_TYPES = (nn.LSTM, nn.GRU, nn.RNN)


class TorchCells(NamedTuple):
    """What a ``torch.nn`` RNN module holds, as rnnfuse cells and stack options."""

    cells: list[RecurrentCell]
    backward_cells: list[RecurrentCell] | None
    batch_first: bool
    dropout: float


def cells_from_torch(module: nn.Module) -> TorchCells:
    """The cells (on ``module``'s device and dtype) giving the same numbers as ``module``."""
    if not isinstance(module, _TORCH_TYPES):
        raise TypeError(f"module: expected torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    dirs = 2 if module.bidirectional else 1
    stacks: list[list[RecurrentCell]] = [[], []]
    in_size = module.input_size
    for k in range(module.num_layers):
        for d in range(dirs):
            stacks[d].append(_cell_from_torch(module, in_size, _suffix(k, d)))
        in_size = stacks[0][-1].output_size * dirs
    return TorchCells(
        stacks[0], stacks[1] if dirs == 2 else None, module.batch_first, module.dropout
    )


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def _cell_from_torch(module: Any, in_size: int, suffix: str) -> RecurrentCell:
    p: dict[str, Any] = {
        name: getattr(module, name + suffix, None)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    }
    kind = _kind(module)
    w_ih, w_hh = (to_rnnfuse_gates(p[n], "torch", kind, 0) for n in ("weight_ih", "weight_hh"))
    values: dict[str, Any] = {"weight_ih": w_ih, "weight_hh": w_hh}
    bias = bool(module.bias)  # bias=False: cells without bias parameters
    if kind == "gru":
        cell: RecurrentCell = GRUCell(in_size, module.hidden_size, reset_after=True, bias=bias)
        if bias:
            values.update({n: _gates(p[n], kind) for n in ("bias_ih", "bias_hh")})
    else:
        if bias:
            values["bias"] = _gates(p["bias_ih"] + p["bias_hh"], kind)
        if kind == "lstm":
            cell = LSTMCell(
                in_size, module.hidden_size, proj_size=module.proj_size or None, bias=bias
            )
            if module.proj_size:
                values["weight_hr"] = p["weight_hr"]
        else:
            cell = RNNCell(in_size, module.hidden_size, nonlinearity=module.nonlinearity, bias=bias)
    cell = cell.to(device=w_ih.device, dtype=w_ih.dtype)
    copy_params(cell, values, f"module (parameters *{suffix})")
    return cell


def _kind(module: nn.Module) -> str:
    return "lstm" if isinstance(module, nn.LSTM) else "gru" if isinstance(module, nn.GRU) else "rnn"


def _gates(value: Any, kind: str) -> Any:
    return None if value is None else to_rnnfuse_gates(value, "torch", kind, 0)


def torch_from_cells(
    cells: Sequence[RecurrentCell],
    backward_cells: Sequence[RecurrentCell] | None = None,
    *,
    batch_first: bool = True,
    dropout: float = 0.0,
    residual: bool = False,
    variational_dropout: bool = False,
) -> nn.Module:
    """An ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with the same numbers as a stack of ``cells``.

    Raises ``ValueError`` naming what PyTorch cannot express: mixed cell kinds or sizes,
    peepholes, clips, reset-before GRUs, residual connections, variational dropout.
    """
    cells, backward = list(cells), list(backward_cells or [])
    _check_expressible(cells, backward, residual, variational_dropout)
    first = cells[0]
    common = dict(
        input_size=first.input_size,
        hidden_size=first.hidden_size,
        num_layers=len(cells),
        batch_first=batch_first,
        bidirectional=bool(backward),
        dropout=dropout,
        bias=first.use_bias,
    )
    if isinstance(first, LSTMCell):
        module: nn.Module = nn.LSTM(**common, proj_size=first.proj_size or 0)
    elif isinstance(first, GRUCell):
        module = nn.GRU(**common)
    else:
        module = nn.RNN(**common, nonlinearity=first.nonlinearity)
    module = module.to(device=first.weight_ih.device, dtype=first.weight_ih.dtype)
    values: dict[str, Any] = {}
    for d, layer_cells in enumerate([cells, backward] if backward else [cells]):
        for k, cell in enumerate(layer_cells):
            values.update(_torch_values(cell, _suffix(k, d)))
    copy_params(module, values, "stack")
    return module


def _torch_values(cell: RecurrentCell, suffix: str) -> dict[str, Any]:
    """One cell's parameters under ``torch.nn``'s names for layer/direction ``suffix``."""
    kind = cell.kind

    def gates(t: Any) -> Any:
        return from_rnnfuse_gates(t.detach(), "torch", kind, 0)

    out = {"weight_ih": gates(cell.weight_ih), "weight_hh": gates(cell.weight_hh)}
    if not cell.use_bias:  # torch module built with bias=False
        if isinstance(cell, LSTMCell) and cell.forget_bias:
            raise ValueError(
                "stack: not expressible as one torch.nn RNN module: a forget_bias "
                "needs biases, and these cells have bias=False"
            )
        if isinstance(cell, LSTMCell) and cell.proj_size is not None:
            out["weight_hr"] = cell.weight_hr.detach()
        return {name + suffix: value for name, value in out.items()}
    if isinstance(cell, GRUCell):
        out.update(bias_ih=gates(cell.bias_ih), bias_hh=gates(cell.bias_hh))
    else:
        b_hh = cell.bias.detach().new_zeros(cell.bias.shape)  # type: ignore[operator, arg-type]  # nn.Module.__getattr__
        if isinstance(cell, LSTMCell):
            h = cell.hidden_size
            b_hh[h : 2 * h] = cell.forget_bias  # TF1's run-time forget bias, folded in
            if cell.proj_size is not None:
                out["weight_hr"] = cell.weight_hr.detach()
        out.update(bias_ih=gates(cell.bias), bias_hh=gates(b_hh))
    return {name + suffix: value for name, value in out.items()}


def _check_expressible(
    cells: list[RecurrentCell],
    backward: list[RecurrentCell],
    residual: bool,
    variational_dropout: bool,
) -> None:
    why = _why_not_expressible(cells, cells + backward)
    why = why or ("PyTorch's RNNs have no residual connections" if residual else None)
    why = why or ("PyTorch's RNNs have no variational dropout" if variational_dropout else None)
    if why:
        raise ValueError(f"stack: not expressible as one torch.nn RNN module: {why}")


def _why_not_expressible(cells: list[RecurrentCell], all_cells: list[RecurrentCell]) -> str | None:
    kinds = {c.kind for c in all_cells}
    if len(kinds) > 1:
        return f"it mixes cell kinds {sorted(kinds)}"
    if len({c.hidden_size for c in all_cells}) > 1:
        return f"its layers have different sizes {[c.hidden_size for c in cells]}"
    options = {
        tuple(sorted((k, v) for k, v in c.options().items() if k != "forget_bias"))
        for c in all_cells
    }
    if len(options) > 1:
        return "its layers have different options"
    first = cells[0]
    if isinstance(first, LSTMCell) and (
        first.peepholes or first.cell_clip is not None or first.proj_clip is not None
    ):
        return "PyTorch's LSTM has no peepholes, cell_clip or proj_clip"
    if isinstance(first, GRUCell) and not first.reset_after:
        return (
            "PyTorch's GRU resets after the hidden matmul; this GRU "
            "(reset_after=False) resets before"
        )
    acts = {k: v for k, v in first.options().items() if k in ("activation", "recurrent_activation")}
    if acts or (isinstance(first, RNNCell) and first.nonlinearity not in ("tanh", "relu")):
        return (
            f"PyTorch's RNNs compute sigmoid and tanh (an RNN tanh or relu); these cells have "
            f"{acts or {'nonlinearity': getattr(first, 'nonlinearity', None)}}"
        )
    return None
