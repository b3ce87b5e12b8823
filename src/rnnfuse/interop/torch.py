"""Conversion between :class:`~rnnfuse.StackedRNN` and ``torch.nn.LSTM/GRU/RNN``.

PyTorch names its weights ``weight_ih_l{k}[_reverse]``, ``weight_hh_l{k}``,
``bias_ih_l{k}``, ``bias_hh_l{k}`` and ``weight_hr_l{k}`` (projection).  Its gate orders
(LSTM i, f, g, o; GRU r, z, n) are the ones rnnfuse uses, so weights copy over unchanged;
the LSTM's and RNN's two biases add into rnnfuse's one ``bias``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..cells import GRUCell, LSTMCell, RecurrentCell, RNNCell

__all__ = ["stack_from_torch", "stack_to_torch"]

_TORCH_TYPES = (nn.LSTM, nn.GRU, nn.RNN)


def stack_from_torch(module: nn.Module) -> Any:
    """A :class:`StackedRNN` with the same numbers as ``module`` (LSTM, GRU or RNN)."""
    from ..stack import StackedRNN

    if not isinstance(module, _TORCH_TYPES):
        raise TypeError(f"module: expected torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    dirs = 2 if module.bidirectional else 1
    stacks: list[list[RecurrentCell]] = [[], []]
    in_size = module.input_size
    for k in range(module.num_layers):
        for d in range(dirs):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            stacks[d].append(_cell_from_torch(module, in_size, suffix))
        in_size = stacks[0][-1].output_size * dirs
    return StackedRNN.from_cells(  # each cell is already on the module's device and dtype
        stacks[0],
        backward_cells=stacks[1] if dirs == 2 else None,
        batch_first=module.batch_first,
        dropout=module.dropout,
    )


def _cell_from_torch(module: nn.Module, in_size: int, suffix: str) -> RecurrentCell:
    hidden = module.hidden_size
    p = {name: getattr(module, name + suffix, None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")}
    bias_sum = None if p["bias_ih"] is None else p["bias_ih"] + p["bias_hh"]
    if isinstance(module, nn.LSTM):
        cell: RecurrentCell = LSTMCell(in_size, hidden, proj_size=module.proj_size or None)
        values = {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "bias": bias_sum}
        if module.proj_size:
            values["weight_hr"] = p["weight_hr"]
    elif isinstance(module, nn.GRU):
        cell = GRUCell(in_size, hidden, reset_after=True)
        values = {k: p[k] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    else:
        nonlin = module.nonlinearity
        cell = RNNCell(in_size, hidden, nonlinearity=nonlin)
        values = {"weight_ih": p["weight_ih"], "weight_hh": p["weight_hh"], "bias": bias_sum}
    ref = p["weight_ih"]
    cell = cell.to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        for name, value in values.items():
            target = getattr(cell, name)
            if value is None:  # a module built with bias=False
                target.zero_()
            else:
                target.copy_(value)
    return cell


def stack_to_torch(stack: Any) -> nn.Module:
    """An ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with the same numbers as ``stack``.

    Raises ``ValueError`` naming what PyTorch cannot express: mixed cell kinds or sizes,
    peepholes, clips, reset-before GRUs, residual connections, variational dropout.
    """
    cells = list(stack.layers)
    _check_expressible(stack, cells)
    first = cells[0]
    common = dict(
        input_size=first.input_size,
        hidden_size=first.hidden_size,
        num_layers=len(cells),
        batch_first=stack.batch_first,
        bidirectional=stack.bidirectional,
        dropout=stack.dropout,
    )
    if isinstance(first, LSTMCell):
        module: nn.Module = nn.LSTM(**common, proj_size=first.proj_size or 0)
    elif isinstance(first, GRUCell):
        module = nn.GRU(**common)
    else:
        module = nn.RNN(**common, nonlinearity=first.nonlinearity)
    ref = first.weight_ih
    module = module.to(device=ref.device, dtype=ref.dtype)
    directions = [cells] + ([list(stack.backward_layers)] if stack.bidirectional else [])
    with torch.no_grad():
        for d, layer_cells in enumerate(directions):
            for k, cell in enumerate(layer_cells):
                _copy_into_torch(module, cell, f"_l{k}" + ("_reverse" if d else ""))
    return module


def _copy_into_torch(module: nn.Module, cell: RecurrentCell, suffix: str) -> None:
    getattr(module, "weight_ih" + suffix).copy_(cell.weight_ih)
    getattr(module, "weight_hh" + suffix).copy_(cell.weight_hh)
    if isinstance(cell, GRUCell):
        getattr(module, "bias_ih" + suffix).copy_(cell.bias_ih)
        getattr(module, "bias_hh" + suffix).copy_(cell.bias_hh)
        return
    getattr(module, "bias_ih" + suffix).copy_(cell.bias)
    b_hh = getattr(module, "bias_hh" + suffix)
    b_hh.zero_()
    if isinstance(cell, LSTMCell):
        h = cell.hidden_size
        b_hh[h : 2 * h] = cell.forget_bias  # TF1's run-time forget bias, folded in
        if cell.proj_size is not None:
            getattr(module, "weight_hr" + suffix).copy_(cell.weight_hr)


def _check_expressible(stack: Any, cells: list[RecurrentCell]) -> None:
    def fail(why: str) -> None:
        raise ValueError(f"stack: not expressible as one torch.nn RNN module: {why}")

    all_cells = cells + list(stack.backward_layers)
    kinds = {c.kind for c in all_cells}
    if len(kinds) > 1:
        fail(f"it mixes cell kinds {sorted(kinds)}")
    sizes = {c.hidden_size for c in all_cells}
    if len(sizes) > 1:
        fail(f"its layers have different sizes {[c.hidden_size for c in cells]}")
    options = {tuple(sorted((k, v) for k, v in c.options().items() if k != "forget_bias")) for c in all_cells}
    if len(options) > 1:
        fail("its layers have different options")
    first = cells[0]
    if isinstance(first, LSTMCell) and (first.peepholes or first.cell_clip or first.proj_clip):
        fail("PyTorch's LSTM has no peepholes, cell_clip or proj_clip")
    if isinstance(first, GRUCell) and not first.reset_after:
        fail("PyTorch's GRU resets after the hidden matmul; this GRU (reset_after=False) resets before")
    if stack.residual:
        fail("PyTorch's RNNs have no residual connections")
    if stack.variational_dropout:
        fail("PyTorch's RNNs have no variational dropout")
