"""The contract every recurrent cell follows.

A cell owns the parameters of one layer in one direction.  It computes one step,
``cell(x_t, state) -> (output_t, new_state)``, and splits that step in two so that a
sequence can be run fast: :meth:`RecurrentCell.project_input` applies the input weights to
all steps at once (one matrix multiply), :meth:`RecurrentCell.step_projected` does the
recurrent part of one step.  It states its sizes (:attr:`RecurrentCell.state_size`,
:attr:`RecurrentCell.output_size`) and tells the kernels how it may be run fast
(:meth:`RecurrentCell.kernel_spec`, see :mod:`rnnfuse.cells.spec`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..state import LayerState
from .constants import cached_constant
from .flat import FlatEntry, flatten, is_flat
from .spec import KernelSpec

__all__ = ["RecurrentCell"]


class RecurrentCell(nn.Module):
    """Base class of :class:`LSTMCell`, :class:`GRUCell` and :class:`RNNCell`."""

    kind: str = ""  # "lstm" | "gru" | "rnn"
    use_bias: bool = True  # False: built with bias=False (no bias parameters)
    weight_ih: Tensor  # every cell registers these two parameters (declared for type checkers)
    weight_hh: Tensor

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = _positive_int("input_size", input_size)
        self.hidden_size = _positive_int("hidden_size", hidden_size)

    # -- sizes ------------------------------------------------------------------
    @property
    def output_size(self) -> int:
        """Size of the output (``h``) of one step."""
        return self.hidden_size

    @property
    def state_size(self) -> Any:
        """Feature sizes of the state, in its structure: an int here (one tensor ``(B, H)``);
        an LSTM cell's is ``LSTMState(H, P)``."""
        return self.hidden_size

    # -- state ------------------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LayerState:
        """The zero state for ``batch_size`` sequences."""
        raise NotImplementedError

    # -- computation ------------------------------------------------------------
    def project_input(self, x: Tensor) -> Tensor:
        """``x @ W_ih^T`` plus the biases that add to it, for any leading shape."""
        raise NotImplementedError

    def step_projected(self, xw: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        """One step from a projected input ``xw`` (see :meth:`project_input`)."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: LayerState | None = None) -> tuple[Tensor, LayerState]:
        """One step of the cell.

        Args:
            x: one step's input, ``(B, F)`` with ``F = input_size``.
            state: the layer state before the step (``LSTMState(c, h)`` of ``(B, H)``
                tensors for an LSTM cell, one ``(B, H)`` tensor otherwise); ``None`` starts
                from zeros.

        Returns:
            ``(output, new_state)``: ``output`` is ``(B, output_size)`` (an LSTM cell's
            ``h``, ``(B, P)`` with a projection), ``new_state`` in the structure of ``state``.

        Raises:
            ValueError: ``x`` is not ``(B, input_size)``.

        Example:
            >>> import torch
            >>> from rnnfuse import LSTMCell
            >>> output, state = LSTMCell(6, 8)(torch.randn(3, 6))
            >>> tuple(output.shape), tuple(state.c.shape)
            ((3, 8), (3, 8))
        """
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected shape (B, {self.input_size}), got {list(x.shape)}")
        if state is None:
            state = self.initial_state(x.shape[0], x.device, x.dtype)
        return self.step_projected(self.project_input(x), state)

    def kernel_spec(self, dtype: torch.dtype, device: torch.device) -> KernelSpec | None:
        """How the kernels may run this cell on inputs of ``dtype`` on ``device``, or
        ``None``: the reference loop (the default, for a user's own cell).

        A spec promises the exact equations of :meth:`step_projected`; a subclass that
        changes the step must not inherit its parent's spec.
        """
        return None

    def bias_or_zeros(
        self,
        bias: Tensor | None,
        size: int,
        dtype: torch.dtype,
        device: torch.device,
        slot: str = "zero_bias",
    ) -> Tensor:
        """``bias``, or for a cell built with ``bias=False`` a ``(size,)`` zero constant
        (not a parameter; ``slot`` names its view in the flat buffer, else it is cached),
        so that kernels taking biases still run it."""
        if bias is not None:
            return bias
        return self.constant(
            slot, dtype, device, lambda: torch.zeros(size, dtype=dtype, device=device)
        )

    # -- one flat buffer (see rnnfuse.cells.flat) ----------------------------------
    def flat_entries(self) -> list[FlatEntry]:
        """The members of this cell's flat buffer in order: the fused kernel's weights in
        ``nn.RNNBase`` order first (constants where the cell has no such parameter), then
        the other parameters.  The default: the parameters in registration order."""
        return [FlatEntry(name) for name, _ in self.named_parameters(recurse=False)]

    def cudnn_args(self) -> tuple[str, int, int, int] | None:
        """``(mode, input_size, hidden_size, proj_size)`` of cuDNN when the flat entries
        are exactly a fused kernel's weights (then cuDNN's layout is used on CUDA)."""
        return None

    def flatten_parameters(self) -> None:
        """Put the parameters (and the fused kernel's constants) into one flat buffer,
        unless they are already; see :mod:`rnnfuse.cells.flat`."""
        if self.is_flat():
            return
        self._flat_constants = flatten(self, self.flat_entries(), self.cudnn_args())

    def is_flat(self) -> bool:
        """Whether the parameters and constants are views of one flat buffer."""
        constants = getattr(self, "_flat_constants", None)
        if not constants and any(e.make is not None for e in self.flat_entries()):
            return False
        members = list(self.parameters(recurse=False)) + list((constants or {}).values())
        return is_flat(members)

    def constant(self, slot: str, dtype: torch.dtype, device: torch.device, make: Any) -> Tensor:
        """The constant ``slot`` of the flat buffer when it is there in ``dtype`` on
        ``device``, else ``make()`` cached per cell (see :mod:`.constants`)."""
        found = getattr(self, "_flat_constants", {}).get(slot)
        if found is not None and found.dtype == dtype and found.device == device:
            return found
        return cached_constant(self, (slot, dtype, device), make)

    def _apply(self, fn: Any, recurse: bool = True) -> RecurrentCell:
        out = super()._apply(fn, recurse)
        self.flatten_parameters()  # new storage after .to()/.cuda()/.half(), as nn.RNNBase
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.flatten_parameters()  # deepcopy and unpickling give each parameter its own storage

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.flatten_parameters()  # load_state_dict(assign=True) replaces the parameters

    # -- description ------------------------------------------------------------
    def options(self) -> dict[str, Any]:
        """The keyword options that rebuild this cell (besides the two sizes)."""
        return {}

    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this cell: ``kind``, sizes and options."""
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            **self.options(),
        }

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options().items())
        return f"{self.input_size}, {self.hidden_size}{opts}"

    def reset_parameters(self) -> None:
        """Uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, as PyTorch initialises its RNNs."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value}")
    return value


def _optional_positive_float(name: str, value: Any) -> float | None:
    """Validate an optional clip value: ``None`` (no clip) or a float >= 0 (``0.0`` clips
    at zero, as TF's ``LSTMCell`` does: it tests the clip against ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a positive float or None, got {value!r}")
    if not value >= 0:
        raise ValueError(
            f"{name}: expected a positive float or None, got {value} "
            f"(0.0 is accepted too: a clip at zero, as in TF)"
        )
    return float(value)


def _check_bias(bias: Any) -> bool:
    if not isinstance(bias, bool):
        raise TypeError(f"bias: expected a bool, got {bias!r}")
    return bias
