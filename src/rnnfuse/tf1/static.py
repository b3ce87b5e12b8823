"""TF1's ``static_rnn``, ``static_bidirectional_rnn`` and ``stack_bidirectional_dynamic_rnn``.

``static_rnn`` and ``static_bidirectional_rnn`` take a Python list of ``T`` tensors
``[B, F]`` and return lists; they name their variables as their dynamic counterparts
(``rnn/...``, ``bidirectional_rnn/{fw,bw}/...``) and give the same numbers, so they run as
:func:`~rnnfuse.tf1.dynamic_rnn` / :func:`~rnnfuse.tf1.bidirectional_dynamic_rnn` on the
stacked list.  ``stack_bidirectional_dynamic_rnn`` (``tf.contrib.rnn`` in TF 1.x) runs one
``bidirectional_dynamic_rnn`` per layer under ``stack_bidirectional_rnn/cell_<i>``, each
layer reading the previous layer's ``[fw, bw]`` outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .cells import variable_scope
from .run import bidirectional_dynamic_rnn, dynamic_rnn

__all__ = ["static_rnn", "static_bidirectional_rnn", "stack_bidirectional_dynamic_rnn"]


def _stacked(inputs: Any) -> Tensor:
    if isinstance(inputs, Tensor) or not isinstance(inputs, Sequence) or not inputs:
        raise TypeError(
            f"inputs: expected a non-empty list of [batch, features] tensors (one per "
            f"step), got {type(inputs).__name__}"
        )
    shapes = {tuple(t.shape) for t in inputs}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(
            f"inputs: expected tensors of one shape [batch, features], got shapes {sorted(shapes)}"
        )
    return torch.stack(list(inputs), 1)


def static_rnn(
    cell: Any,
    inputs: Sequence[Tensor],
    initial_state: Any = None,
    dtype: Any = None,
    sequence_length: Any = None,
    scope: str | None = None,
) -> tuple[list[Tensor], Any]:
    """TF1's ``static_rnn``: ``(outputs, state)``, ``outputs`` a list of ``T`` tensors."""
    outputs, state = dynamic_rnn(
        cell,
        _stacked(inputs),
        sequence_length=sequence_length,
        initial_state=initial_state,
        dtype=dtype,
        scope=scope,
    )
    return list(outputs.unbind(1)), state


def static_bidirectional_rnn(
    cell_fw: Any,
    cell_bw: Any,
    inputs: Sequence[Tensor],
    initial_state_fw: Any = None,
    initial_state_bw: Any = None,
    dtype: Any = None,
    sequence_length: Any = None,
    scope: str | None = None,
) -> tuple[list[Tensor], Any, Any]:
    """TF1's ``static_bidirectional_rnn``: ``(outputs, state_fw, state_bw)``, the outputs a
    list of per-step ``[fw, bw]`` concatenations."""
    (out_fw, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
        cell_fw,
        cell_bw,
        _stacked(inputs),
        sequence_length=sequence_length,
        initial_state_fw=initial_state_fw,
        initial_state_bw=initial_state_bw,
        dtype=dtype,
        scope=scope,
    )
    return list(torch.cat([out_fw, out_bw], -1).unbind(1)), state_fw, state_bw


def stack_bidirectional_dynamic_rnn(
    cells_fw: Sequence[Any],
    cells_bw: Sequence[Any],
    inputs: Any,
    initial_states_fw: Sequence[Any] | None = None,
    initial_states_bw: Sequence[Any] | None = None,
    dtype: Any = None,
    sequence_length: Any = None,
    parallel_iterations: int | None = None,
    time_major: bool = False,
    scope: str | None = None,
    swap_memory: bool = False,
) -> tuple[Tensor, tuple, tuple]:
    """``tf.contrib.rnn.stack_bidirectional_dynamic_rnn``: ``(outputs, states_fw, states_bw)``.

    ``outputs`` are the last layer's ``[fw, bw]`` concatenated; the states hold one entry per
    layer.  Variables: ``<scope>/cell_<i>/bidirectional_rnn/{fw,bw}/...``.
    """
    for name, cells in (("cells_fw", cells_fw), ("cells_bw", cells_bw)):
        if isinstance(cells, torch.nn.Module) or not isinstance(cells, Sequence) or not cells:
            raise TypeError(
                f"{name}: expected a non-empty list of cells, got {type(cells).__name__}"
            )
    if len(cells_fw) != len(cells_bw):
        raise ValueError(
            f"cells_bw: expected as many cells as cells_fw ({len(cells_fw)}), got {len(cells_bw)}"
        )
    for name, states in (
        ("initial_states_fw", initial_states_fw),
        ("initial_states_bw", initial_states_bw),
    ):
        if states is not None and len(states) != len(cells_fw):
            raise ValueError(
                f"{name}: expected one state per layer ({len(cells_fw)}), got {len(states)}"
            )
    states_fw, states_bw = [], []
    layer_in = inputs
    with variable_scope(scope or "stack_bidirectional_rnn"):
        for i, (cell_fw, cell_bw) in enumerate(zip(cells_fw, cells_bw, strict=True)):
            with variable_scope(f"cell_{i}"):
                (out_fw, out_bw), (state_fw, state_bw) = bidirectional_dynamic_rnn(
                    cell_fw,
                    cell_bw,
                    layer_in,
                    sequence_length=sequence_length,
                    initial_state_fw=None if initial_states_fw is None else initial_states_fw[i],
                    initial_state_bw=None if initial_states_bw is None else initial_states_bw[i],
                    dtype=dtype,
                    time_major=time_major,
                )
            layer_in = torch.cat([out_fw, out_bw], -1)
            states_fw.append(state_fw)
            states_bw.append(state_bw)
    return layer_in, tuple(states_fw), tuple(states_bw)
