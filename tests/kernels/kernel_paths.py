"""Shared by the kernel semantics tests: every way a layer can run, forced by name, and two
references (``torch.nn`` run one sequence at a time, and rnnfuse's reference loop).

A *path* is a function ``(cell, x, lengths, state, reverse) -> (outputs, final_state)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from rnnfuse.cells.base import RecurrentCell
from rnnfuse.convert._params import to_rnnfuse_gates
from rnnfuse.convert.torch import torch_from_cells
from rnnfuse.kernels import _ext, run_layer, run_loop
from rnnfuse.kernels.bptt import run_bptt
from rnnfuse.kernels.fused import run_fused_full
from rnnfuse.kernels.ops import layer_op, spec_to_op_args, state_from_list, state_to_list
from rnnfuse.kernels.padded import padded_runs, run_fused_padded
from rnnfuse.kernels.ragged import run_fused_segments
from rnnfuse.state import LSTMState

Path = Callable[[RecurrentCell, Tensor, "Tensor | None", Any, bool], tuple[Tensor, Any]]


def leaves(state: Any) -> list[Tensor]:
    """A layer state's tensors: ``[c, h]`` or ``[h]``."""
    return list(state) if isinstance(state, LSTMState) else [state]


def _fused(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    assert lengths is None, "the fused path runs full batches only"
    return run_fused_full(cell, x, state, reverse)


def _segments(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    # two segments for more distinct lengths: some sequences run on over the padding
    assert lengths is not None
    return run_fused_segments(cell, x, lengths, state, reverse, max_segments=2)


def _padded(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    assert lengths is not None
    return run_fused_padded(cell, x, lengths, state, reverse)


def _bptt_compiled(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    assert _ext.available(), "the C++ extension is not built here"
    return run_bptt(cell, x, lengths, state, reverse)


def _bptt_fallback(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    with _ext.disabled():
        return run_bptt(cell, x, lengths, state, reverse)


def _layer_disabled(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    with _ext.disabled():
        return run_layer(cell, x, lengths, state, reverse)


def _op(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, reverse: bool
) -> tuple[Tensor, Any]:
    """The ``rnnfuse::layer`` operator (what compiled and exported graphs call), run eagerly."""
    spec = cell.kernel_spec(x.dtype, x.device)
    assert spec is not None
    kind, weights, peepholes, cell_clip, proj_clip = spec_to_op_args(
        spec, "fused" if spec.mode else "bptt"
    )
    lens = x.new_empty(0, dtype=torch.int64) if lengths is None else lengths
    out = layer_op(
        x, lens, state_to_list(state), weights, kind, reverse, peepholes, cell_clip, proj_clip
    )
    return out[0], state_from_list(out[1:])


PATHS: dict[str, Path] = {
    "fused": _fused,
    "fused-segments": _segments,
    "fused-padded": _padded,
    "bptt-compiled": _bptt_compiled,
    "bptt-fallback": _bptt_fallback,
    "loop": run_loop,
    "run_layer": run_layer,
    "run_layer-no-extension": _layer_disabled,
    "op": _op,
}


def path_runs(path: str, cell: RecurrentCell, ragged: bool) -> bool:
    """Whether ``path`` can run ``cell`` (on a ragged batch when ``ragged``)."""
    spec = cell.kernel_spec(cell.weight_ih.dtype, cell.weight_ih.device)
    fused = spec is not None and spec.mode is not None
    if path == "fused":
        return fused and not ragged
    if path == "fused-segments":
        return fused and ragged
    if path == "fused-padded":
        return fused and ragged and padded_runs(spec)
    if path.startswith("bptt"):
        return (
            spec is not None
            and spec.bptt is not None
            and (path != "bptt-compiled" or _ext.available())
        )
    if path == "op":
        return spec is not None
    return True


@contextlib.contextmanager
def grad_mode(mode: str) -> Iterator[None]:
    """``"grad"`` (autograd records), ``"no_grad"`` or ``"inference"`` (inference_mode)."""
    if mode == "grad":
        with torch.enable_grad():
            yield
    elif mode == "no_grad":
        with torch.no_grad():
            yield
    else:
        with torch.inference_mode():
            yield


def loss_of(y: Tensor, final: Any) -> Tensor:
    """A loss touching every output and every part of the final state."""
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    return (y * weights).sum() + sum((0.7 * t * t).sum() for t in leaves(final))


def run_with_grads(
    path: Path,
    cell: RecurrentCell,
    x: Tensor,
    lengths: Tensor | None,
    state: Any,
    reverse: bool = False,
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Outputs, final state and the gradients of :func:`loss_of` for the input, the initial
    state and every parameter of ``cell``."""
    x = x.detach().requires_grad_()
    state_in = [t.detach().requires_grad_() for t in leaves(state)]
    start = LSTMState(*state_in) if isinstance(state, LSTMState) else state_in[0]
    y, final = path(cell, x, lengths, start, reverse)
    grads = torch.autograd.grad(
        loss_of(y, final), [x, *state_in, *cell.parameters()], allow_unused=True
    )
    return (
        y,
        leaves(final),
        [
            torch.zeros_like(t) if g is None else g
            for g, t in zip(grads, [x, *state_in, *cell.parameters()])
        ],
    )


def torch_per_sequence(
    cell: RecurrentCell, x: Tensor, lengths: Tensor | None, state: Any, *, grads: bool
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """``nn.LSTM``/``nn.GRU``/``nn.RNN`` with ``cell``'s numbers, run on each sequence alone
    (``x[b, :length]``): outputs zero past each length, the final state (the initial state
    of an empty sequence) and, when ``grads``, the gradients of :func:`loss_of` in ``cell``'s
    parameter order (the module's, gates reordered; an LSTM's ``bias`` is ``b_ih``'s)."""
    module = torch_from_cells([cell])
    batch, steps = x.shape[0], x.shape[1]
    lens = [steps] * batch if lengths is None else lengths.tolist()
    x = x.detach().requires_grad_(grads)
    state_in = [t.detach().requires_grad_(grads) for t in leaves(state)]
    lstm = isinstance(state, LSTMState)
    outs, finals = [], []
    with torch.set_grad_enabled(grads):
        for b, n in enumerate(lens):
            rows = [t[b : b + 1] for t in state_in]
            if n == 0:
                outs.append(x.new_zeros(1, steps, cell.output_size))
                finals.append(rows)
                continue
            hx: Any = (rows[1].unsqueeze(0), rows[0].unsqueeze(0)) if lstm else rows[0].unsqueeze(0)
            out, fin = module(x[b : b + 1, :n], hx)
            outs.append(nn.functional.pad(out, (0, 0, 0, steps - n)))
            finals.append([fin[1][0], fin[0][0]] if lstm else [fin[0]])
        y = torch.cat(outs)
        final = [torch.cat(parts) for parts in zip(*finals)]
    if not grads:
        return y.detach(), [t.detach() for t in final], []
    start = LSTMState(*final) if lstm else final[0]
    params = dict(module.named_parameters())
    found = torch.autograd.grad(
        loss_of(y, start), [x, *state_in, *params.values()], allow_unused=True
    )
    by_name = {name: g for name, g in zip(params, found[1 + len(state_in) :])}
    return y, final, [*found[: 1 + len(state_in)], *_cell_grads(cell, by_name)]


def _cell_grads(cell: RecurrentCell, by_name: dict[str, Tensor]) -> list[Tensor]:
    """The module's gradients (``torch.nn`` names, layer 0) as ``cell``'s parameters'."""
    kind = cell.kind
    names = {
        "weight_ih": "weight_ih_l0",
        "weight_hh": "weight_hh_l0",
        "bias": "bias_ih_l0",
        "bias_ih": "bias_ih_l0",
        "bias_hh": "bias_hh_l0",
        "weight_hr": "weight_hr_l0",
    }
    out = []
    for name, _ in cell.named_parameters():
        g = by_name[names[name]]
        out.append(g if name == "weight_hr" else to_rnnfuse_gates(g, "torch", kind, 0))
    return out


def assert_same(
    got: list[Tensor], expected: list[Tensor], tol: float, what: str, *, scaled: bool = False
) -> None:
    """Equal to ``tol`` (relative and absolute), NaN where ``expected`` has NaN.  ``scaled``:
    the absolute tolerance is ``tol`` times the largest finite magnitude of each expected
    tensor (at least 1): rounding of sums scales with the terms, not with each result."""
    assert len(got) == len(expected), f"{what}: {len(got)} tensors, expected {len(expected)}"
    for k, (a, b) in enumerate(zip(got, expected)):
        atol = tol
        if scaled:
            finite = b.detach()[torch.isfinite(b.detach())]
            atol = tol * max(1.0, float(finite.abs().max()) if finite.numel() else 1.0)
        torch.testing.assert_close(
            a, b, atol=atol, rtol=tol, equal_nan=True, msg=lambda m, k=k: f"{what}[{k}]: {m}"
        )


def assert_zero_past(y: Tensor, lengths: Tensor | None, what: str) -> None:
    """Outputs are exactly zero (not NaN) past each length."""
    if lengths is None:
        return
    past = torch.arange(y.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
    bad = y[past]
    assert bool((bad == 0).all()), (
        f"{what}: outputs past a length must be exactly zero, got {bad[bad != 0][:5]}"
    )
