"""One layer in one direction as a registered PyTorch operator, for compilers and exporters.

``torch.compile`` and ``torch.export`` trace Python: a ragged batch's layout (sorting,
segments, ``.tolist()`` of the lengths) would either break the graph or be baked into it
for one length pattern, and PyTorch's fused LSTM cannot be traced for training at all
(inductor has no lowering of ``aten.mkldnn_rnn_layer``).  So while tracing, :func:`run_layer`
calls ``torch.ops.rnnfuse.layer`` instead: an opaque operator whose implementation runs
the very eager paths (fused, fused-segments, fused-packed, BPTT) at run time, with the
lengths as a tensor.  Tracing sees only shapes (:func:`_layer_fake`): the lengths never
reach a Python decision inside a graph, so a new length pattern neither recompiles nor
reuses a layout made for another one.

The backward (``rnnfuse::layer_backward``, an operator too, so that AOTAutograd can put it
in a backward graph) recomputes the layer's forward with autograd on detached inputs and
calls :func:`torch.autograd.grad`: exact (the same eager kernels and their hand-written
backwards), at the cost of one extra forward in compiled or exported training only.
Eager calls never come here.

For ONNX, the operator's translation (:mod:`rnnfuse._onnx_translation`) is put in
``torch.onnx``'s default registry when this module loads (:mod:`rnnfuse._onnx_registration`),
so that the plain ``torch.onnx.export(model, args, dynamo=True)`` finds it.

The operator's arguments (all static but the tensors):

* ``kind``: ``"lstm"``, ``"gru"``, ``"rnn_tanh"``, ``"rnn_relu"`` (PyTorch's fused kernels;
  ``weights`` = ``(w_ih, w_hh, b_ih, b_hh[, w_hr])``), ``"bptt_lstm"`` (``weights`` =
  ``(w_ih, bias, w_hh[, peepholes (3, H)][, w_hr])``, ``peepholes`` says whether they are
  there) or ``"bptt_gru"`` (reset-before GRU: ``(w_ih, bias, w_hh)``).
* ``lengths``: int64 (B,), or an empty tensor when every sequence is full.
* ``state``: ``[c, h]`` for an LSTM, ``[h]`` otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from .. import _onnx_registration
from .._checks import check_length_values
from ..cells.spec import GRUKernelArgs, KernelSpec, LSTMKernelArgs
from ..state import LSTMState

__all__ = ["layer_op", "spec_to_op_args", "state_to_list", "state_from_list", "FUSED_KINDS"]

FUSED_KINDS = ("lstm", "gru", "rnn_tanh", "rnn_relu")
BPTT_KINDS = ("bptt_lstm", "bptt_gru")


def spec_to_op_args(
    spec: KernelSpec, path: str
) -> tuple[str, list[Tensor], bool, float | None, float | None]:
    """``(kind, weights, peepholes, cell_clip, proj_clip)`` of the operator for a cell's
    ``spec`` on ``path`` (``"fused"`` or ``"bptt"``)."""
    if path == "fused":
        if spec.mode is None or spec.fused_weights is None:
            raise ValueError(
                f"spec: expected a spec with a fused kernel for path 'fused', got {spec!r}"
            )
        return spec.mode, list(spec.fused_weights), False, None, None
    if spec.bptt is None:
        raise ValueError(
            f"spec: expected a spec with a BPTT kernel for path {path!r}, got {spec!r}"
        )
    args = spec.bptt()
    if isinstance(args, LSTMKernelArgs):
        weights = [args.weight_ih, args.bias, args.weight_hh]
        if args.peepholes is not None:
            weights.append(args.peepholes)
        if args.weight_hr is not None:
            weights.append(args.weight_hr)
        return "bptt_lstm", weights, args.peepholes is not None, args.cell_clip, args.proj_clip
    if isinstance(args, GRUKernelArgs):
        return "bptt_gru", [args.weight_ih, args.bias, args.weight_hh], False, None, None
    raise TypeError(
        f"spec.bptt(): expected LSTMKernelArgs or GRUKernelArgs, got {type(args).__name__}"
    )


def state_to_list(state: Any) -> list[Tensor]:
    """A layer state as the operator takes it: ``[c, h]`` (LSTM) or ``[h]``."""
    return [state.c, state.h] if isinstance(state, LSTMState) else [state]


def state_from_list(parts: Sequence[Tensor]) -> Any:
    """Inverse of :func:`state_to_list`."""
    return LSTMState(parts[0], parts[1]) if len(parts) == 2 else parts[0]


def _check_kind(kind: str) -> None:
    if kind not in FUSED_KINDS + BPTT_KINDS:
        raise ValueError(f"kind: expected one of {FUSED_KINDS + BPTT_KINDS}, got {kind!r}")


def spec_from_op_args(
    kind: str,
    weights: Sequence[Tensor],
    peepholes: bool,
    cell_clip: float | None,
    proj_clip: float | None,
) -> KernelSpec:
    """Inverse of :func:`spec_to_op_args`: the spec the operator's arguments describe.

    A fused ``"lstm"`` also gets its BPTT arguments (bias ``b_ih + b_hh``, the sum a cell's
    own spec makes), so that a ragged batch takes the path eager takes
    (:func:`.ragged.ragged_cpu_path`)."""
    _check_kind(kind)
    if kind == "lstm":
        w_ih, w_hh, b_ih, b_hh = weights[:4]
        w_hr = weights[4] if len(weights) == 5 else None
        return KernelSpec(
            kind,
            tuple(weights),
            lambda: LSTMKernelArgs(w_ih, b_ih + b_hh, w_hh, None, w_hr, None, None),
        )
    if kind in FUSED_KINDS:
        return KernelSpec(kind, tuple(weights))
    if kind == "bptt_lstm":
        peep = weights[3] if peepholes else None
        w_hr = weights[-1] if len(weights) == 3 + int(peepholes) + 1 else None
        args = LSTMKernelArgs(weights[0], weights[1], weights[2], peep, w_hr, cell_clip, proj_clip)
        return KernelSpec(bptt=lambda: args)
    gru = GRUKernelArgs(weights[0], weights[1], weights[2])
    return KernelSpec(bptt=lambda: gru)


def _run_eager(
    x: Tensor,
    lengths: Tensor,
    state: Sequence[Tensor],
    weights: Sequence[Tensor],
    kind: str,
    reverse: bool,
    peepholes: bool,
    cell_clip: float | None,
    proj_clip: float | None,
) -> tuple[Tensor, list[Tensor]]:
    """The layer on the eager paths (autograd records it if its inputs require grad): the
    spec of the arguments through :func:`.dispatch.run_spec`, as :func:`run_layer` runs it."""
    from .dispatch import run_spec

    spec = spec_from_op_args(kind, weights, peepholes, cell_clip, proj_clip)
    shortest = check_length_values(lengths, x.shape[1])  # check_lengths left the values to run time
    lens: Tensor | None = lengths if lengths.numel() else None
    if shortest == x.shape[1]:
        lens = None  # every sequence full: the unmasked path, as check_lengths does
    y, final = run_spec(spec, x, lens, state_from_list(state), reverse, None)
    return y, state_to_list(final)


def _fresh(outputs: list[Tensor], inputs: Sequence[Tensor]) -> list[Tensor]:
    """``outputs`` with any that share memory with an input or an earlier output cloned
    (an operator's outputs may alias neither; e.g. the gradients of ``b_ih`` and ``b_hh``
    through their sum are one tensor), all contiguous."""
    taken = {t.untyped_storage().data_ptr() for t in inputs if t.numel()}
    fresh = []
    for o in outputs:
        if o.numel() and o.untyped_storage().data_ptr() in taken:
            o = o.clone()
        fresh.append(o.contiguous())
        if o.numel():
            taken.add(o.untyped_storage().data_ptr())
    return fresh


@torch.library.custom_op("rnnfuse::layer", mutates_args=())
def layer_op(
    x: Tensor,
    lengths: Tensor,
    state: list[Tensor],
    weights: list[Tensor],
    kind: str,
    reverse: bool,
    peepholes: bool,
    cell_clip: float | None,
    proj_clip: float | None,
) -> list[Tensor]:
    """One layer in one direction: returns ``[outputs (B, T, H_out), *final_state]``."""
    with torch.no_grad():
        y, final = _run_eager(
            x, lengths, state, weights, kind, reverse, peepholes, cell_clip, proj_clip
        )
    return _fresh([y, *final], [x, *state, *weights])


@layer_op.register_fake
def _layer_fake(x, lengths, state, weights, kind, reverse, peepholes, cell_clip, proj_clip):
    _check_kind(kind)
    y = x.new_empty(x.shape[0], x.shape[1], state[-1].shape[-1])
    return [y, *(s.new_empty(s.shape) for s in state)]


_AUTOGRAD_KEYS = torch._C.DispatchKeySet(torch._C.DispatchKey.AutogradOther)
for _key in (
    torch._C.DispatchKey.AutogradCPU,
    torch._C.DispatchKey.AutogradCUDA,
    torch._C.DispatchKey.AutogradNestedTensor,
):
    _AUTOGRAD_KEYS = _AUTOGRAD_KEYS | torch._C.DispatchKeySet(_key)


@contextlib.contextmanager
def _autograd_recording() -> Iterator[None]:
    """Autograd on inside an operator's implementation.

    An operator's implementation runs below the autograd dispatch keys (they are excluded
    for its duration), so the recomputed forward would record nothing.  This re-admits
    them (and enables grad mode) for the block; other excluded keys (autocast) stay out."""
    exclude = torch._C._dispatch_tls_local_exclude_set() - _AUTOGRAD_KEYS
    with (
        torch._C._ForceDispatchKeyGuard(torch._C._dispatch_tls_local_include_set(), exclude),
        torch.enable_grad(),
    ):
        yield


@torch.library.custom_op("rnnfuse::layer_backward", mutates_args=())
def layer_backward_op(
    grads: list[Tensor | None],
    x: Tensor,
    lengths: Tensor,
    state: list[Tensor],
    weights: list[Tensor],
    kind: str,
    reverse: bool,
    peepholes: bool,
    cell_clip: float | None,
    proj_clip: float | None,
) -> list[Tensor]:
    """Gradients ``[d x, *d state, *d weights]`` of :func:`layer_op`'s outputs, given
    ``grads`` of them (``None``: no gradient), by recomputing the forward with autograd."""
    inputs = [t.detach().requires_grad_(t.is_floating_point()) for t in (x, *state, *weights)]
    n_state = len(state)
    with _autograd_recording():
        y, final = _run_eager(
            inputs[0],
            lengths,
            inputs[1 : 1 + n_state],
            inputs[1 + n_state :],
            kind,
            reverse,
            peepholes,
            cell_clip,
            proj_clip,
        )
        pairs = [
            (o, g)
            for o, g in zip([y, *final], grads, strict=True)
            if g is not None and o.requires_grad
        ]
        wanted = [t for t in inputs if t.requires_grad]
        found = (
            torch.autograd.grad(
                [o for o, _ in pairs], wanted, [g for _, g in pairs], allow_unused=True
            )
            if pairs
            else [None] * len(wanted)
        )
    found_iter = iter(found)
    result = []
    for t in inputs:
        g = next(found_iter) if t.requires_grad else None
        result.append(torch.zeros_like(t) if g is None else g)
    return _fresh(result, [*_given(grads), x, lengths, *state, *weights])


def _given(grads: Sequence[Tensor | None]) -> list[Tensor]:
    """The gradients that are given (``None``: no gradient)."""
    return [g for g in grads if g is not None]


@layer_backward_op.register_fake
def _layer_backward_fake(
    grads, x, lengths, state, weights, kind, reverse, peepholes, cell_clip, proj_clip
):
    return [t.new_empty(t.shape) for t in (x, *state, *weights)]


def _setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
    x, lengths, state, weights, kind, reverse, peepholes, cell_clip, proj_clip = inputs
    ctx.n_state, ctx.n_weights = len(state), len(weights)
    ctx.options = (kind, reverse, peepholes, cell_clip, proj_clip)
    ctx.save_for_backward(x, lengths, *state, *weights)


def _backward(ctx: Any, grads: list[Tensor | None]) -> tuple:
    saved = ctx.saved_tensors
    x, lengths = saved[0], saved[1]
    state = list(saved[2 : 2 + ctx.n_state])
    weights = list(saved[2 + ctx.n_state :])
    found = layer_backward_op(list(grads), x, lengths, state, weights, *ctx.options)
    d_x = found[0]
    d_state = found[1 : 1 + ctx.n_state]
    d_weights = found[1 + ctx.n_state :]
    return d_x, None, d_state, d_weights, None, None, None, None, None


layer_op.register_autograd(_backward, setup_context=_setup_context)


# the operator's ONNX translation, found by a plain torch.onnx.export(..., dynamo=True)
_onnx_registration.install()
