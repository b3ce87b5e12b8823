"""Plain (Elman) RNN cell: ``h' = act(x W_ih^T + h W_hh^T + bias)``, ``act`` the
``nonlinearity``: tanh or relu (PyTorch's fused kernels), or any other name of
:mod:`rnnfuse.cells.activations` (the reference loop).

TF1's ``BasicRNNCell`` and Keras' ``SimpleRNN`` have one bias; PyTorch's two biases
(``b_ih + b_hh``) are stored here as their sum, ``bias`` (H); ``bias=False`` has none.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .activations import activation, check_activation
from .base import RecurrentCell, _check_bias
from .flat import FlatEntry
from .spec import KernelSpec

__all__ = ["RNNCell", "rnn_step"]

_FUSED = ("tanh", "relu")  # PyTorch's rnn_tanh and rnn_relu


def rnn_step(xw: Tensor, h: Tensor, weight_hh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """One step from the projected input ``xw`` ``(B, H)``."""
    return activation(nonlinearity)(torch.addmm(xw, h, weight_hh.t()))


class RNNCell(RecurrentCell):
    """A plain RNN layer's cell.

    >>> import torch
    >>> out, h = RNNCell(6, 4, nonlinearity="relu")(torch.randn(3, 6))
    >>> bool((out >= 0).all())
    True
    """

    kind = "rnn"
    bias: Tensor | None  # None with bias=False

    def __init__(
        self, input_size: int, hidden_size: int, *, nonlinearity: str = "tanh", bias: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.use_bias = _check_bias(bias)
        self.nonlinearity = check_activation("nonlinearity", nonlinearity)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        if bias:
            self.bias = nn.Parameter(torch.empty(hidden_size))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        self.flatten_parameters()

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        return torch.zeros(
            batch_size,
            self.hidden_size,
            device=device or self.weight_ih.device,
            dtype=dtype or self.weight_ih.dtype,
        )

    def project_input(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight_ih, self.bias)

    def step_projected(self, xw: Tensor, state: Any) -> tuple[Tensor, Tensor]:
        h = rnn_step(xw, state, self.weight_hh, self.nonlinearity)
        return h, h

    def kernel_spec(self, dtype: torch.dtype, device: torch.device) -> KernelSpec | None:
        """PyTorch's fused ``rnn_tanh``/``rnn_relu``; its second bias is a cached zero vector.
        Another nonlinearity: none (the reference loop)."""
        if type(self) is not RNNCell or self.nonlinearity not in _FUSED:  # the reference loop
            return None
        size = self.hidden_size
        bias = self.bias_or_zeros(self.bias, size, dtype, device, "b_ih")
        zeros = self.bias_or_zeros(None, size, dtype, device, "b_hh")
        return KernelSpec(f"rnn_{self.nonlinearity}", (self.weight_ih, self.weight_hh, bias, zeros))

    def flat_entries(self) -> list[FlatEntry]:
        """``w_ih, w_hh, b_ih, b_hh`` (``nn.RNNBase`` order): ``b_ih`` is ``bias`` (zeros
        with ``bias=False``), ``b_hh`` zeros (the one bias holds PyTorch's two)."""
        size = self.hidden_size

        def zeros(dtype: torch.dtype, device: torch.device) -> Tensor:
            return torch.zeros(size, dtype=dtype, device=device)

        return [
            FlatEntry("weight_ih"),
            FlatEntry("weight_hh"),
            FlatEntry("bias") if self.bias is not None else FlatEntry("b_ih", zeros),
            FlatEntry("b_hh", zeros),
        ]

    def cudnn_args(self) -> tuple[str, int, int, int] | None:
        if self.nonlinearity not in _FUSED:
            return None
        return (f"RNN_{self.nonlinearity.upper()}", self.input_size, self.hidden_size, 0)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = (
            {} if self.nonlinearity == "tanh" else {"nonlinearity": self.nonlinearity}
        )
        if not self.use_bias:
            opts["bias"] = False
        return opts
