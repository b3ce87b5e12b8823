"""TF1's cell wrappers, ``ResidualWrapper`` and ``DropoutWrapper``, and running wrapped layers.

A wrapper adds no variables and no scope level (TF names the inner cell's variables as if it
were unwrapped), so :func:`rnnfuse.tf1.restore` restores a wrapper's inner cell.

* ``ResidualWrapper(cell)``: the output is ``cell output + cell input``; the state is the
  inner cell's.
* ``DropoutWrapper(cell, input_keep_prob, output_keep_prob, state_keep_prob, ...)``: dropout
  on the cell's input, output and new state, **in training mode only** (``module.train()``;
  TF1 programs feed keep probabilities of 1.0 at inference, which is what ``eval()`` gives).
  As in TF, ``state_keep_prob`` drops only ``h`` of an LSTM state (not ``c``), and
  ``variational_recurrent=True`` keeps one mask per sequence for all steps.
  :func:`rnnfuse.tf1.as_stack` carries it into a StackedRNN's ``dropout`` when that is the
  same computation (:mod:`rnnfuse.tf1.stacking`), and refuses otherwise.

:func:`run_layer` runs one layer (a cell under its wrappers) over a whole batch-major
sequence: the inner cell on the fast kernels, the wrappers on whole tensors; only an active
``state_keep_prob`` needs the step-by-step loop.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from ..state import LSTMState as LSTMStateTuple

__all__ = ["ResidualWrapper", "DropoutWrapper", "core_cell", "is_wrapper", "run_layer"]


class _Wrapper(nn.Module):
    """A cell around a cell; sizes and state are the inner cell's."""

    cell: Any  # a tf1 cell or another wrapper

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        if not isinstance(cell, _Wrapper) and not hasattr(cell, "tf_name"):  # a tf1 cell
            raise TypeError(
                f"cell: expected a tf1 cell (BasicLSTMCell, LSTMCell, GRUCell, "
                f"BasicRNNCell) or a wrapper of one, got {type(cell).__name__}"
            )
        self.cell = cell
        self.tf_scope: str | None = None

    @property
    def state_size(self) -> Any:
        return self.cell.state_size

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    @property
    def state_is_tuple(self) -> bool:
        return getattr(self.cell, "state_is_tuple", True)

    def zero_state(self, batch_size: int, dtype: torch.dtype | None = None) -> Any:
        return self.cell.zero_state(batch_size, dtype)


class ResidualWrapper(_Wrapper):
    """TF1's ``ResidualWrapper``: ``output = cell(inputs) + inputs`` (or ``residual_fn``)."""

    def __init__(self, cell: nn.Module, residual_fn: Any = None) -> None:
        super().__init__(cell)
        self.residual_fn = residual_fn

    def combine(self, inputs: Tensor, outputs: Tensor) -> Tensor:
        if self.residual_fn is not None:
            return self.residual_fn(inputs, outputs)
        if inputs.shape[-1] != outputs.shape[-1]:
            raise ValueError(
                f"inputs: ResidualWrapper adds the input to the output, so their sizes "
                f"must match; expected {outputs.shape[-1]} features, got {inputs.shape[-1]}"
            )
        return outputs + inputs

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step: ``(cell output + inputs, cell state)``."""
        out, new = self.cell(inputs, state)
        return self.combine(inputs, out), new


class DropoutWrapper(_Wrapper):
    """TF1's ``DropoutWrapper``: dropout on input, output and state, in training mode only."""

    def __init__(
        self,
        cell: nn.Module,
        input_keep_prob: float = 1.0,
        output_keep_prob: float = 1.0,
        state_keep_prob: float = 1.0,
        variational_recurrent: bool = False,
        input_size: int | None = None,
        dtype: Any = None,
        seed: int | None = None,
        dropout_state_filter_visitor: Any = None,
    ) -> None:
        super().__init__(cell)
        for name, p in (
            ("input_keep_prob", input_keep_prob),
            ("output_keep_prob", output_keep_prob),
            ("state_keep_prob", state_keep_prob),
        ):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
                raise ValueError(f"{name}: expected a probability in (0, 1], got {p!r}")
        if not isinstance(variational_recurrent, bool):
            raise TypeError(
                f"variational_recurrent: expected a bool, got {variational_recurrent!r}"
            )
        if dropout_state_filter_visitor is not None:
            raise ValueError(
                "dropout_state_filter_visitor: not supported (the default, which "
                "drops an LSTM's h and not its c, is used)"
            )
        self.input_keep_prob, self.output_keep_prob = (
            float(input_keep_prob),
            float(output_keep_prob),
        )
        self.state_keep_prob = float(state_keep_prob)
        self.variational_recurrent = variational_recurrent
        self.seed = seed
        self._generator: torch.Generator | None = None
        self._masks: dict[str, Tensor] = {}  # variational masks of the running sequence

    def _keep(self, which: str) -> float:
        return 1.0 if not self.training else getattr(self, f"{which}_keep_prob")

    def _rng(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(int(self.seed))
        return self._generator

    def drop(self, t: Tensor, which: str, per_sequence: bool = False) -> Tensor:
        """Dropout of ``t`` with this wrapper's ``<which>_keep_prob`` (identity in eval mode).

        ``per_sequence`` (whole sequences ``(B, T, F)`` with ``variational_recurrent``): one
        mask per sequence, shared by its steps."""
        keep = self._keep(which)
        if keep >= 1.0:
            return t
        if self.variational_recurrent:
            shape = (t.shape[0], 1, t.shape[-1]) if per_sequence else t.shape
            key = f"{which}:{tuple(shape)}"
            mask = self._masks.get(key)
            if mask is None or per_sequence:
                mask = (
                    torch.empty(shape, dtype=t.dtype, device=t.device).bernoulli_(
                        keep, generator=self._rng(t.device)
                    )
                    / keep
                )
                if not per_sequence:
                    self._masks[key] = mask
            return t * mask
        mask = torch.empty_like(t).bernoulli_(keep, generator=self._rng(t.device)) / keep
        return t * mask

    def new_sequence(self) -> None:
        """Forget the variational masks (a new batch of sequences starts)."""
        self._masks.clear()

    def drop_state(self, state: Any) -> Any:
        if self._keep("state") >= 1.0:
            return state
        if isinstance(state, LSTMStateTuple):  # TF's default filter: h only
            return LSTMStateTuple(state.c, self.drop(state.h, "state"))
        return self.drop(state, "state")

    def forward(self, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One step, as TF's ``DropoutWrapper.__call__``."""
        out, new = self.cell(self.drop(inputs, "input"), state)
        return self.drop(out, "output"), self.drop_state(new)


def is_wrapper(cell: Any) -> bool:
    return isinstance(cell, _Wrapper)


def core_cell(cell: Any) -> Any:
    """The tf1 cell under any wrappers."""
    while isinstance(cell, _Wrapper):
        cell = cell.cell
    return cell


def _needs_steps(cell: Any) -> bool:
    """Whether some wrapper in ``cell`` drops the state now (only a step loop can)."""
    while isinstance(cell, _Wrapper):
        if isinstance(cell, DropoutWrapper) and cell._keep("state") < 1.0:
            return True
        cell = cell.cell
    return False


def run_layer(
    cell: Any, x: Tensor, lengths: Tensor | None, state: Any, run_core: Any
) -> tuple[Tensor, Any]:
    """One (wrapped) layer over ``x`` ``(B, T, F)``: ``(outputs, final state)``.

    ``run_core(core_cell, x, lengths, state)`` runs an unwrapped cell (the fast kernels).
    Outputs past a sequence's length are zeroed by the caller.
    """
    if isinstance(cell, DropoutWrapper):
        cell.new_sequence()
    if _needs_steps(cell):
        return _step_loop(cell, x, lengths, state)
    if isinstance(cell, ResidualWrapper):
        out, new = run_layer(cell.cell, x, lengths, state, run_core)
        return cell.combine(x, out), new
    if isinstance(cell, DropoutWrapper):
        out, new = run_layer(
            cell.cell, cell.drop(x, "input", per_sequence=True), lengths, state, run_core
        )
        return cell.drop(out, "output", per_sequence=True), new
    return run_core(cell, x, lengths, state)


def _step_loop(cell: Any, x: Tensor, lengths: Tensor | None, state: Any) -> tuple[Tensor, Any]:
    """TF's ``dynamic_rnn`` step by step: past a sequence's length the state is kept."""
    batch, steps = x.shape[0], x.shape[1]
    if state is None:
        state = core_cell(cell).cell.initial_state(batch, x.device, x.dtype)
    outs = []
    for t in range(steps):
        out, new = cell(x[:, t], state)
        if lengths is not None:
            live = (t < lengths.to(x.device))[:, None]
            state = torch.utils._pytree.tree_map(partial(torch.where, live), new, state)
        else:
            state = new
        outs.append(out)
    return torch.stack(outs, 1), state
