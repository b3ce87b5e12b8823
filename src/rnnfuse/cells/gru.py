"""GRU cell, in both variants: reset after the hidden matmul (PyTorch, cuDNN, Keras'
default) and reset before it (TensorFlow 1's ``GRUCell``, Keras ``reset_after=False``).

Gate order of the stacked weights is **r, z, n** (PyTorch's; TF1 stores r, u in
``gates/kernel`` and the candidate in ``candidate/kernel``; Keras uses z, r, h).  With
``xw = x W_ih^T + b``::

    r, z = sigmoid(xw_r + h W_hr^T (+ b_hr)), sigmoid(xw_z + h W_hz^T (+ b_hz))
    reset_after=True:   n = tanh(xw_n + r * (h W_hn^T + b_hn))
    reset_after=False:  n = tanh(xw_n + (r * h) W_hn^T)
    h' = (1 - z) * n + z * h

With ``reset_after=True`` the parameters are ``bias_ih`` and ``bias_hh`` (3H each; the
hidden bias of ``n`` sits inside the reset); with ``reset_after=False`` all biases add,
so there is one ``bias`` (3H).  ``bias=False`` (as ``torch.nn.GRU(bias=False)``): no bias
parameters at all.

``recurrent_activation`` (default ``"sigmoid"``) replaces the sigmoid of ``r`` and ``z``,
``activation`` (default ``"tanh"``) the tanh of ``n`` (names in
:mod:`rnnfuse.cells.activations`); other than the defaults, the layer runs on the reference
loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .activations import activation as activation_fn
from .activations import check_activation
from .base import RecurrentCell, _check_bias
from .flat import FlatEntry
from .spec import GRUKernelArgs, KernelSpec

__all__ = ["GRUCell", "gru_step_reset_after", "gru_step_reset_before"]


Activation = Callable[[Tensor], Tensor]


def gru_step_reset_after(
    xw: Tensor,
    h: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    act: Activation = torch.tanh,
    gate: Activation = torch.sigmoid,
) -> Tensor:
    """One GRU step, reset applied after the hidden matmul (PyTorch semantics); ``act`` and
    ``gate`` are the activations of ``n`` and of ``r``, ``z``."""
    gh = h @ weight_hh.t() if bias_hh is None else torch.addmm(bias_hh, h, weight_hh.t())
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = gate(x_r + h_r)
    z = gate(x_z + h_z)
    n = act(x_n + r * h_n)
    return n + z * (h - n)


def gru_step_reset_before(
    xw: Tensor,
    h: Tensor,
    weight_hh: Tensor,
    act: Activation = torch.tanh,
    gate: Activation = torch.sigmoid,
) -> Tensor:
    """One GRU step, reset applied to ``h`` before the matmul (TensorFlow 1 semantics)."""
    hidden = h.shape[1]
    x_r, x_z, x_n = xw.chunk(3, dim=1)
    gh = h @ weight_hh[: 2 * hidden].t()
    r = gate(x_r + gh[:, :hidden])
    z = gate(x_z + gh[:, hidden:])
    n = act(x_n + (r * h) @ weight_hh[2 * hidden :].t())
    return n + z * (h - n)


class GRUCell(RecurrentCell):
    """A GRU layer's cell.

    >>> import torch
    >>> cell = GRUCell(6, 20, reset_after=False)   # TensorFlow 1's GRUCell
    >>> out, h = cell(torch.randn(3, 6))
    >>> out.shape
    torch.Size([3, 20])
    """

    kind = "gru"
    bias: Tensor | None  # reset_after=False (None with bias=False)
    bias_ih: Tensor | None  # reset_after=True (None with bias=False)
    bias_hh: Tensor | None

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        reset_after: bool = True,
        bias: bool = True,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.use_bias = _check_bias(bias)
        self.activation = check_activation("activation", activation)
        self.recurrent_activation = check_activation("recurrent_activation", recurrent_activation)
        if not isinstance(reset_after, bool):
            raise TypeError(f"reset_after: expected a bool, got {reset_after!r}")
        self.reset_after = reset_after
        h = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(3 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * h, h))
        names = ("bias_ih", "bias_hh") if reset_after else ("bias",)
        for name in names:
            if bias:
                setattr(self, name, nn.Parameter(torch.empty(3 * h)))
            else:
                self.register_parameter(name, None)
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
        bias = self.bias_ih if self.reset_after else self.bias
        return nn.functional.linear(x, self.weight_ih, bias)

    @property
    def default_activations(self) -> bool:
        """Whether the activations are sigmoid and tanh (what every fast path computes)."""
        return self.activation == "tanh" and self.recurrent_activation == "sigmoid"

    def step_projected(self, xw: Tensor, state: Any) -> tuple[Tensor, Tensor]:
        act, gate = activation_fn(self.activation), activation_fn(self.recurrent_activation)
        if self.reset_after:
            h = gru_step_reset_after(xw, state, self.weight_hh, self.bias_hh, act, gate)
        else:
            h = gru_step_reset_before(xw, state, self.weight_hh, act, gate)
        return h, h

    def kernel_spec(self, dtype: torch.dtype, device: torch.device) -> KernelSpec | None:
        """Reset after: PyTorch's fused GRU, with this cell's own four parameters.  Reset
        before: the BPTT kernel (PyTorch has no fused kernel for it).  Activations other
        than sigmoid and tanh: none (the reference loop)."""
        if type(self) is not GRUCell or not self.default_activations:  # the reference loop
            return None
        size = 3 * self.hidden_size
        if self.reset_after:
            return KernelSpec(
                "gru",
                (
                    self.weight_ih,
                    self.weight_hh,
                    self.bias_or_zeros(self.bias_ih, size, dtype, device, "bias_ih"),
                    self.bias_or_zeros(self.bias_hh, size, dtype, device, "bias_hh"),
                ),
            )
        return KernelSpec(
            bptt=lambda: GRUKernelArgs(
                self.weight_ih,
                self.bias_or_zeros(self.bias, size, dtype, device, "bias"),
                self.weight_hh,
            )
        )

    def flat_entries(self) -> list[FlatEntry]:
        """``w_ih, w_hh`` and the biases (``nn.RNNBase`` order; zero constants with
        ``bias=False``)."""
        size = 3 * self.hidden_size
        names = ("bias_ih", "bias_hh") if self.reset_after else ("bias",)
        return [FlatEntry("weight_ih"), FlatEntry("weight_hh")] + [
            FlatEntry(name)
            if getattr(self, name) is not None
            else FlatEntry(name, lambda d, v: torch.zeros(size, dtype=d, device=v))
            for name in names
        ]

    def cudnn_args(self) -> tuple[str, int, int, int] | None:
        if not (self.reset_after and self.default_activations):
            return None
        return ("GRU", self.input_size, self.hidden_size, 0)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {} if self.reset_after else {"reset_after": False}
        if not self.use_bias:
            opts["bias"] = False
        if self.activation != "tanh":
            opts["activation"] = self.activation
        if self.recurrent_activation != "sigmoid":
            opts["recurrent_activation"] = self.recurrent_activation
        return opts
