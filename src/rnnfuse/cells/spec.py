"""The contract between a cell and the kernels: a cell describes how it may be run fast.

:meth:`RecurrentCell.kernel_spec` returns a :class:`KernelSpec`.  The kernels read only
the spec: they never test a cell's class, read its attributes or add a forget bias.  A cell
without a spec (``None``, the default of a user's own cell) runs on the reference loop.

* ``mode`` and ``fused_weights``: the cell's step is exactly that of one of PyTorch's fused
  kernels (``"lstm"``, ``"gru"``, ``"rnn_tanh"``, ``"rnn_relu"``), with these flat weights
  in ``torch.nn.RNNBase`` order ``(w_ih, w_hh, b_ih, b_hh[, w_hr])``.
* ``bptt``: a function returning the arguments of a hand-written backward-through-time
  kernel (:class:`LSTMKernelArgs` or :class:`GRUKernelArgs`: their type names the kernel),
  for what no fused kernel computes.  A function, so that a spec costs no tensor operation
  (e.g. adding the forget bias) unless that kernel runs.

A spec is made per call (it is cheap: the cell's parameters and cached constants), so a
changed option or a replaced parameter is always seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor

__all__ = ["KernelSpec", "LSTMKernelArgs", "GRUKernelArgs", "BPTTArgs"]


class LSTMKernelArgs(NamedTuple):
    """The LSTM BPTT kernel's view of a cell (gate order i, f, g, o)."""

    weight_ih: Tensor  # (4H, F)
    bias: Tensor  # (4H,) the effective bias: the forget bias is in the f slot
    weight_hh: Tensor  # (4H, P or H)
    peepholes: Tensor | None  # (3, H): w_i_diag, w_f_diag, w_o_diag
    weight_hr: Tensor | None  # (P, H)
    cell_clip: float | None
    proj_clip: float | None


class GRUKernelArgs(NamedTuple):
    """The reset-before GRU BPTT kernel's view of a cell (gate order r, z, n)."""

    weight_ih: Tensor  # (3H, F)
    bias: Tensor  # (3H,)
    weight_hh: Tensor  # (3H, H)


BPTTArgs = LSTMKernelArgs | GRUKernelArgs


class KernelSpec(NamedTuple):
    """How a cell may be run by the kernels; see the module docstring."""

    mode: str | None = None
    fused_weights: tuple[Tensor, ...] | None = None
    bptt: Callable[[], BPTTArgs] | None = None

    @property
    def has_projection(self) -> bool:
        """Whether the fused weights include a projection ``w_hr`` (an LSTM's 5th weight)."""
        return self.fused_weights is not None and len(self.fused_weights) == 5
