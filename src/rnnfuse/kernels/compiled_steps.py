"""The elementwise part of a BPTT step as one compiled kernel, for devices without the C++ loop.

On CPU the BPTT kernels' time loop runs in C++ (:mod:`rnnfuse.kernels._ext`).  Elsewhere
(CUDA) the loop is Python over PyTorch operations, and a step's elementwise part is about
ten of them, each a kernel launch: for small batches the launches, not the arithmetic, set
the time.  Here the same equations (those of :func:`rnnfuse.kernels.bptt_lstm._cell_forward`
and friends) are written as functions that read their inputs and write their results into
the caller's buffers with ``copy_``, which ``torch.compile`` (``dynamic=True``: one kernel for
every number of rows) turns into one fused kernel per step and direction: a step is then its
matrix product(s) and one launch.

They are used on CUDA when Triton is there (:func:`step_kernels`), unless
``RNNFUSE_NO_COMPILED_STEPS=1``; :func:`forced` runs them on any device with a chosen
``torch.compile`` backend (the tests run them on CPU).  The first call of each compiles it
(seconds; PyTorch caches the result on disk); if compiling fails, a warning says so and the
plain operations run.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "StepKernels",
    "step_kernels",
    "compiles_steps",
    "forced",
    "lstm_cell_forward",
    "lstm_cell_backward",
    "gru_gates",
    "gru_update",
    "gru_cell_backward",
]


def lstm_cell_forward(
    act: Tensor,
    c_prev: Tensor,
    c: Tensor,
    tanh_c: Tensor,
    m: Tensor,
    peepholes: Tensor | None,
    clip: float | None,
) -> None:
    """:func:`rnnfuse.kernels.bptt_lstm._cell_forward`: ``act`` (gate pre-activations)
    becomes (σi, σf, tanh g, σo); writes ``c``, ``tanh c`` and ``m = σo tanh c``."""
    hidden = c_prev.shape[1]
    i, f, g, o = act.split(hidden, 1)
    if peepholes is not None:
        i, f = i + peepholes[0] * c_prev, f + peepholes[1] * c_prev
    i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
    new_c = f * c_prev + i * g
    if clip is not None:
        new_c = new_c.clamp(-clip, clip)
    if peepholes is not None:
        o = o + peepholes[2] * new_c
    o, t = torch.sigmoid(o), torch.tanh(new_c)
    act.copy_(torch.cat([i, f, g, o], 1))
    c.copy_(new_c)
    tanh_c.copy_(t)
    m.copy_(o * t)


def lstm_cell_backward(
    dm: Tensor,
    dc: Tensor,
    tanh_c: Tensor,
    c_prev: Tensor,
    act: Tensor,
    d_gates: Tensor,
    peepholes: Tensor | None,
    c_mask: Tensor | None,
) -> None:
    """:func:`rnnfuse.kernels.bptt_lstm._cell_backward`: ``dc`` becomes the gradient of
    ``c_prev``; writes the gate pre-activations' gradients into ``d_gates``."""
    hidden = c_prev.shape[1]
    a_i, a_f, a_g, a_o = act.split(hidden, 1)
    d_o = dm * tanh_c * a_o * (1 - a_o)
    d_c = dc + dm * a_o * (1 - tanh_c * tanh_c)
    if peepholes is not None:
        d_c = d_c + d_o * peepholes[2]
    if c_mask is not None:
        d_c = d_c * c_mask
    d_i = d_c * a_g * a_i * (1 - a_i)
    d_f = d_c * c_prev * a_f * (1 - a_f)
    d_g = d_c * a_i * (1 - a_g * a_g)
    carry = d_c * a_f
    if peepholes is not None:
        carry = carry + d_i * peepholes[0] + d_f * peepholes[1]
    d_gates.copy_(torch.cat([d_i, d_f, d_g, d_o], 1))
    dc.copy_(carry)


def gru_gates(act_rz: Tensor, h_prev: Tensor, rh: Tensor) -> None:
    """Reset-before GRU, between its two products: ``act_rz`` becomes (σr, σz), ``rh = σr h``."""
    hidden = h_prev.shape[1]
    rz = torch.sigmoid(act_rz)
    act_rz.copy_(rz)
    rh.copy_(rz[:, :hidden] * h_prev)


def gru_update(act_n: Tensor, a_z: Tensor, h_prev: Tensor, h: Tensor) -> None:
    """``act_n`` becomes ``n = tanh(·)``; ``h = n + σz (h_prev - n)``."""
    n = torch.tanh(act_n)
    act_n.copy_(n)
    h.copy_(torch.lerp(n, h_prev, a_z))


def gru_cell_backward(dh: Tensor, act: Tensor, h_prev: Tensor, d_act: Tensor) -> None:
    """The reset-before GRU's step back, up to its products: writes ``∂/∂z`` and ``∂/∂n``
    (inside the tanh) into ``d_act``; ``∂/∂r`` follows from ``d_n W_hn`` (a product)."""
    hidden = h_prev.shape[1]
    a_z, a_n = act[:, hidden : 2 * hidden], act[:, 2 * hidden :]
    d_n = dh * (1 - a_z) * (1 - a_n * a_n)
    d_z = dh * (h_prev - a_n) * a_z * (1 - a_z)
    d_act[:, hidden:].copy_(torch.cat([d_z, d_n], 1))


def gru_reset_backward(
    d_rh: Tensor, dh: Tensor, act: Tensor, h_prev: Tensor, d_act: Tensor, carry: Tensor
) -> None:
    """Given ``d_rh = d_n W_hn``: writes ``∂/∂r`` into ``d_act`` and the part of ``∂/∂h_prev``
    that is not a product, ``dh σz + d_rh σr``, into ``carry``."""
    hidden = h_prev.shape[1]
    a_r, a_z = act[:, :hidden], act[:, hidden : 2 * hidden]
    d_act[:, :hidden].copy_(d_rh * h_prev * a_r * (1 - a_r))
    carry.copy_(dh * a_z + d_rh * a_r)


class StepKernels(NamedTuple):
    """The compiled step functions (each the function of the same name in this module)."""

    lstm_cell_forward: Callable[..., None]
    lstm_cell_backward: Callable[..., None]
    gru_gates: Callable[..., None]
    gru_update: Callable[..., None]
    gru_cell_backward: Callable[..., None]
    gru_reset_backward: Callable[..., None]


_FUNCTIONS = (
    lstm_cell_forward,
    lstm_cell_backward,
    gru_gates,
    gru_update,
    gru_cell_backward,
    gru_reset_backward,
)
_FORCED = threading.local()


_UNSET = object()


class _FirstCallFallback:
    """``compiled``, or ``plain`` for good (with a warning) if the first call fails: a
    compiler that cannot build a step (no working Triton, an unsupported device) leaves
    the plain operations, not an error.  The first call fails before it runs, so the
    buffers are untouched."""

    def __init__(self, compiled: Callable[..., None], plain: Callable[..., None]) -> None:
        self.compiled, self.plain, self.checked = compiled, plain, False

    def __call__(self, *args: Any) -> None:
        if self.checked:
            return self.compiled(*args)
        try:
            self.compiled(*args)
        except Exception as error:
            warnings.warn(
                f"rnnfuse: compiling the BPTT step {self.plain.__name__} failed "
                f"({type(error).__name__}: {error}); running it as plain PyTorch operations",
                RuntimeWarning,
                stacklevel=2,
            )
            self.compiled = self.plain
            self.plain(*args)
        self.checked = True


Backend = str | Callable[..., Any] | None


@functools.cache
def _compiled(backend: Backend) -> StepKernels:
    if backend is None:
        return StepKernels(*_FUNCTIONS)
    compile_: Any = torch.compile
    return StepKernels(
        *(
            _FirstCallFallback(compile_(fn, backend=backend, dynamic=True, fullgraph=True), fn)
            for fn in _FUNCTIONS
        )
    )


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - every supported torch has it
        return False
    return bool(has_triton())


def step_kernels(t: Tensor) -> StepKernels | None:
    """The compiled step functions for the loop over ``t``'s device, or ``None`` (the
    plain PyTorch operations): compiled on CUDA with Triton unless
    ``RNNFUSE_NO_COMPILED_STEPS=1``, and wherever :func:`forced` says so."""
    backend = getattr(_FORCED, "backend", _UNSET)
    if backend is not _UNSET:
        return _compiled(backend)
    return _compiled("inductor") if compiles_steps(t.device.type) else None


def compiles_steps(device_type: str) -> bool:
    """Whether the BPTT loop on ``device_type`` compiles its steps (outside :func:`forced`)."""
    return (
        device_type == "cuda"
        and os.environ.get("RNNFUSE_NO_COMPILED_STEPS") != "1"
        and _has_triton()
    )


@contextlib.contextmanager
def forced(backend: Backend = "inductor") -> Iterator[None]:
    """Run the step functions on any device, compiled by ``backend`` (a ``torch.compile``
    backend: ``"inductor"``; ``"aot_eager"`` checks the traced equations without generating
    code; ``None`` runs them uncompiled)."""
    previous, _FORCED.backend = getattr(_FORCED, "backend", _UNSET), backend
    try:
        yield
    finally:
        _FORCED.backend = previous
