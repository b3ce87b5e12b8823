"""LSTM cell with TensorFlow 1's options: run-time forget bias, peepholes, projection, clips.

Gate order of the stacked weights is **i, f, g, o** (PyTorch's order; TF1 uses i, j, f, o
and Keras i, f, c, o: the interop modules reorder).  With ``xw = x W_ih^T + bias``::

    i, f, g, o = split(xw + h W_hh^T)
    i = sigmoid(i + p_i * c)                     # p_* are peepholes, when enabled
    f = sigmoid(f + forget_bias + p_f * c)
    c' = clip(f * c + i * tanh(g), cell_clip)
    o = sigmoid(o + p_o * c')
    h' = clip((o * tanh(c')) W_hr^T, proj_clip)  # without projection: o * tanh(c')

``forget_bias`` is added at run time and never stored in a parameter, as in TF1's
``BasicLSTMCell``/``LSTMCell`` (default 0.0 here, like PyTorch and Keras).

``recurrent_activation`` (default ``"sigmoid"``) replaces the sigmoid of the three gates and
``activation`` (default ``"tanh"``) both tanh's, as Keras' and TF1's options do (names in
:mod:`rnnfuse.cells.activations`).  Other than the defaults, the layer runs on the
reference loop (PyTorch's fused kernels and the BPTT kernels compute sigmoid and tanh).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..state import LSTMState
from .activations import activation as activation_fn
from .activations import check_activation
from .base import RecurrentCell, _check_bias, _optional_positive_float, _positive_int
from .flat import FlatEntry
from .spec import KernelSpec, LSTMKernelArgs

__all__ = [
    "LSTMCell",
    "LSTMOptions",
    "lstm_step",
    "lstm_cell_terms",
    "lstm_cell_update",
    "lstm_output",
]


class LSTMOptions(NamedTuple):
    """The non-weight parts of an LSTM step."""

    forget_bias: float = 0.0
    cell_clip: float | None = None
    proj_clip: float | None = None
    activation: str = "tanh"  # of the candidate g and of c in the output
    recurrent_activation: str = "sigmoid"  # of the gates i, f, o

    @property
    def default_activations(self) -> bool:
        """Whether the activations are sigmoid and tanh (what every fast path computes)."""
        return self.activation == "tanh" and self.recurrent_activation == "sigmoid"


_PLAIN = LSTMOptions()


def lstm_cell_terms(i: Tensor, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """The two terms of the cell update from the gate pre-activations (forget bias and
    peepholes already added): ``(σ(f), σ(i) tanh(g))``, so ``c' = σ(f) c + σ(i) tanh(g)``.

    Split so that a caller can compute the terms of many steps in one batch and then run
    only the cheap recurrence ``c' = keep * c + write`` step by step."""
    return torch.sigmoid(f), torch.sigmoid(i) * torch.tanh(g)


def lstm_cell_update(i: Tensor, f: Tensor, g: Tensor, c: Tensor) -> Tensor:
    """The new cell state ``σ(f) c + σ(i) tanh(g)`` (no clip) from the pre-activations."""
    keep, write = lstm_cell_terms(i, f, g)
    return keep * c + write


def lstm_output(o: Tensor, c: Tensor) -> Tensor:
    """The output before any projection, ``σ(o) tanh(c)``, from the pre-activation ``o``."""
    return torch.sigmoid(o) * torch.tanh(c)


def lstm_step(
    xw: Tensor,
    state: LSTMState,
    weight_hh: Tensor,
    options: LSTMOptions = _PLAIN,
    peepholes: tuple[Tensor, Tensor, Tensor] | None = None,
    weight_hr: Tensor | None = None,
) -> LSTMState:
    """One LSTM step from the projected input ``xw`` ``(B, 4H)``; returns the new state."""
    c, h = state
    gates = torch.addmm(xw, h, weight_hh.t())
    i, f, g, o = gates.chunk(4, dim=1)
    if peepholes is not None:
        p_i, p_f, p_o = peepholes
        i = i + p_i * c
        f = f + p_f * c
    if options.forget_bias:
        f = f + options.forget_bias
    gate: Callable[[Tensor], Tensor] = torch.sigmoid
    act: Callable[[Tensor], Tensor] = torch.tanh
    if options.default_activations:
        c = lstm_cell_update(i, f, g, c)
    else:
        gate, act = activation_fn(options.recurrent_activation), activation_fn(options.activation)
        c = gate(f) * c + gate(i) * act(g)
    if options.cell_clip is not None:
        c = c.clamp(-options.cell_clip, options.cell_clip)
    if peepholes is not None:
        o = o + peepholes[2] * c
    h = lstm_output(o, c) if options.default_activations else gate(o) * act(c)
    if weight_hr is not None:
        h = h @ weight_hr.t()
        if options.proj_clip is not None:
            h = h.clamp(-options.proj_clip, options.proj_clip)
    return LSTMState(c, h)


class LSTMCell(RecurrentCell):
    """An LSTM layer's cell.

    Parameters: ``weight_ih`` (4H, input_size), ``weight_hh`` (4H, P or H), ``bias`` (4H;
    none with ``bias=False``, as ``torch.nn.LSTM(bias=False)``), with ``peepholes`` also
    ``w_i_diag``, ``w_f_diag``, ``w_o_diag`` (H), and with ``proj_size=P`` also ``weight_hr``
    (P, H).

    >>> import torch
    >>> cell = LSTMCell(6, 20, forget_bias=1.0)
    >>> out, state = cell(torch.randn(3, 6))
    >>> out.shape, state.c.shape
    (torch.Size([3, 20]), torch.Size([3, 20]))
    """

    kind = "lstm"
    bias: Tensor | None  # None with bias=False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        *,
        forget_bias: float = 0.0,
        peepholes: bool = False,
        proj_size: int | None = None,
        cell_clip: float | None = None,
        proj_clip: float | None = None,
        bias: bool = True,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.use_bias = _check_bias(bias)
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)):
            raise TypeError(f"forget_bias: expected a float, got {forget_bias!r}")
        if not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias: expected a finite float, got {forget_bias!r}")
        self.proj_size = None if proj_size is None else _positive_int("proj_size", proj_size)
        if proj_clip is not None and self.proj_size is None:
            raise ValueError(
                "proj_clip: clips the projection, so it needs proj_size; got proj_size=None"
            )
        self.lstm_options = LSTMOptions(
            float(forget_bias),
            _optional_positive_float("cell_clip", cell_clip),
            _optional_positive_float("proj_clip", proj_clip),
            check_activation("activation", activation),
            check_activation("recurrent_activation", recurrent_activation),
        )
        self.peepholes = bool(peepholes)
        h, out = hidden_size, self.output_size
        self.weight_ih = nn.Parameter(torch.empty(4 * h, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * h, out))
        if self.use_bias:
            self.bias = nn.Parameter(torch.empty(4 * h))
        else:
            self.register_parameter("bias", None)
        if self.peepholes:
            self.w_i_diag = nn.Parameter(torch.empty(h))
            self.w_f_diag = nn.Parameter(torch.empty(h))
            self.w_o_diag = nn.Parameter(torch.empty(h))
        if self.proj_size is not None:
            self.weight_hr = nn.Parameter(torch.empty(self.proj_size, h))
        self.reset_parameters()
        self.flatten_parameters()

    @property
    def forget_bias(self) -> float:
        return self.lstm_options.forget_bias

    @property
    def cell_clip(self) -> float | None:
        return self.lstm_options.cell_clip

    @property
    def proj_clip(self) -> float | None:
        return self.lstm_options.proj_clip

    @property
    def activation(self) -> str:
        return self.lstm_options.activation

    @property
    def recurrent_activation(self) -> str:
        return self.lstm_options.recurrent_activation

    @property
    def output_size(self) -> int:
        return self.proj_size if self.proj_size is not None else self.hidden_size

    @property
    def state_size(self) -> LSTMState:
        """``LSTMState(c=H, h=P)`` (``P = H`` without a projection)."""
        return LSTMState._make((self.hidden_size, self.output_size))  # sizes, not tensors

    def peephole_weights(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """``(w_i_diag, w_f_diag, w_o_diag)``, or ``None`` without peepholes."""
        if not self.peepholes:
            return None
        return self.w_i_diag, self.w_f_diag, self.w_o_diag

    # -- kernels ----------------------------------------------------------------
    def kernel_spec(self, dtype: torch.dtype, device: torch.device) -> KernelSpec | None:
        """PyTorch's fused LSTM when there are no peepholes and clips and any projection
        is narrower than the cell (the kernel tells a projection by ``h``'s size; the forget
        bias goes into its constant second bias), and the BPTT kernel for any other options;
        activations other than sigmoid and tanh: none (the reference loop)."""
        if type(self) is not LSTMCell:  # a subclass may change the step: the reference loop
            return None
        if not self.lstm_options.default_activations:
            return None
        fused: tuple[Tensor, ...] | None = None
        if (
            not self.peepholes
            and self.cell_clip is None
            and self.proj_clip is None
            and self._fused_projection()
        ):
            fused = (
                self.weight_ih,
                self.weight_hh,
                self.bias_or_zeros(self.bias, 4 * self.hidden_size, dtype, device, "b_ih"),
                self.second_bias(dtype, device),
            )
            if self.proj_size is not None:
                fused += (self.weight_hr,)
        return KernelSpec("lstm" if fused else None, fused, lambda: self._bptt_args(dtype, device))

    def second_bias(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``(4H,)`` constant: zeros with ``forget_bias`` in the f slot (gate order i, f,
        g, o), the ``b_hh`` of PyTorch's LSTM kernel: a view of the flat buffer (cached
        while the cell lives where the buffer is not in ``dtype`` on ``device``)."""
        return self.constant(
            self._second_bias_slot(), dtype, device, lambda: self._make_second_bias(dtype, device)
        )

    def _second_bias_slot(self) -> str:
        return f"b_hh(forget_bias={self.forget_bias!r})"  # a changed value is another slot

    def _make_second_bias(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        hidden = self.hidden_size
        vec = torch.zeros(4 * hidden, dtype=dtype, device=device)
        vec[hidden : 2 * hidden] = self.forget_bias
        return vec

    def flat_entries(self) -> list[FlatEntry]:
        """``w_ih, w_hh, b_ih, b_hh(, w_hr)`` (``nn.RNNBase`` order; ``b_hh`` the constant
        second bias, ``b_ih`` zeros with ``bias=False``), then the peepholes."""
        size = 4 * self.hidden_size
        entries = [
            FlatEntry("weight_ih"),
            FlatEntry("weight_hh"),
            FlatEntry("bias")
            if self.bias is not None
            else FlatEntry("b_ih", lambda d, v: torch.zeros(size, dtype=d, device=v)),
            FlatEntry(self._second_bias_slot(), self._make_second_bias),
        ]
        if self.proj_size is not None:
            entries.append(FlatEntry("weight_hr"))
        if self.peepholes:
            entries += [FlatEntry("w_i_diag"), FlatEntry("w_f_diag"), FlatEntry("w_o_diag")]
        return entries

    def _fused_projection(self) -> bool:
        """Whether PyTorch's kernels take this cell's projection: none, or ``P < H``."""
        return self.proj_size is None or self.proj_size < self.hidden_size

    def cudnn_args(self) -> tuple[str, int, int, int] | None:
        if (
            self.peepholes
            or not self._fused_projection()
            or not self.lstm_options.default_activations
        ):
            return None
        return ("LSTM", self.input_size, self.hidden_size, self.proj_size or 0)

    def effective_bias(self, dtype: torch.dtype, device: torch.device) -> Tensor:
        """``bias`` plus the run-time ``forget_bias`` in the f slot: the one bias that
        acts like this cell's two (the only place they are added)."""
        if self.bias is None:
            return self.second_bias(dtype, device)
        if not self.forget_bias:
            return self.bias
        return self.bias + self.second_bias(dtype, device)

    def _bptt_args(self, dtype: torch.dtype, device: torch.device) -> LSTMKernelArgs:
        peepholes = self.peephole_weights()
        return LSTMKernelArgs(
            self.weight_ih,
            self.effective_bias(dtype, device),
            self.weight_hh,
            None if peepholes is None else torch.stack(peepholes),
            getattr(self, "weight_hr", None),
            self.cell_clip,
            self.proj_clip,
        )

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> LSTMState:
        dtype = dtype or self.weight_ih.dtype
        device = device or self.weight_ih.device
        return LSTMState(
            torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype),
            torch.zeros(batch_size, self.output_size, device=device, dtype=dtype),
        )

    def project_input(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight_ih, self.bias)

    def step_projected(self, xw: Tensor, state: Any) -> tuple[Tensor, LSTMState]:
        new = lstm_step(
            xw,
            state,
            self.weight_hh,
            self.lstm_options,
            self.peephole_weights(),
            getattr(self, "weight_hr", None),
        )
        return new.h, new

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.forget_bias:
            opts["forget_bias"] = self.forget_bias
        if self.peepholes:
            opts["peepholes"] = True
        if self.proj_size is not None:
            opts["proj_size"] = self.proj_size
        if self.cell_clip is not None:
            opts["cell_clip"] = self.cell_clip
        if self.proj_clip is not None:
            opts["proj_clip"] = self.proj_clip
        if not self.use_bias:
            opts["bias"] = False
        if self.activation != "tanh":
            opts["activation"] = self.activation
        if self.recurrent_activation != "sigmoid":
            opts["recurrent_activation"] = self.recurrent_activation
        return opts
