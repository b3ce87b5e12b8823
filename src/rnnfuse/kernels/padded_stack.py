"""A whole LSTM stack over a small ragged inference batch, each layer one fused call over
the padding, with nothing between the calls but what they need.

Where every layer of a stack takes the ``fused-padded`` path
(:func:`rnnfuse.kernels.ragged.ragged_cpu_path`: LSTM layers, no gradient, at most 16
sequences with more than one thread, 8 with one), the stack's forward is one call here
instead of a :func:`rnnfuse.kernels.run_layer` per layer: the lengths are planned and the weights with
the indicator column (:mod:`rnnfuse.kernels.padded`) looked up once, and the layers chain
time-major (each output, zero past every length, is the next input as it is).  The C++
extension runs the layers' glue (indicator column, fused call, final ``h``) in one call;
without it the same operations run in Python.  The results are those of the layer-by-layer
path, bit for bit: the same operations on the same values.

With so few rows a batch costs little more than its fused calls, so the glue matters: a
2-layer LSTM of 256, batch 8, T = 100, two threads (AMD EPYC) spent about 2.4 ms per
forward between and around its two calls layer by layer, 11 % of ``nn.LSTM``'s forward.
"""

from __future__ import annotations

from collections.abc import Sequence
import torch
from torch import Tensor, _VF

from ..cells.base import RecurrentCell
from ..cells.constants import tracing
from ..cells.spec import KernelSpec
from ..state import LSTMState
from . import _ext
from .padded import _indicator_weights, _plan
from .ragged import ragged_cpu_path

__all__ = ["padded_stack_specs", "run_padded_stack"]


def padded_stack_specs(cells: Sequence[RecurrentCell], x: Tensor, lengths: Tensor) -> list[KernelSpec] | None:
    """The layers' kernel specs if every layer of the (unidirectional, plain) stack of
    ``cells`` takes the ``fused-padded`` path on ``x`` (B, T, F) with ``lengths``, else ``None``."""
    if x.device.type != "cpu" or tracing() or x.shape[1] == 0:
        return None
    specs = []
    for cell in cells:
        spec = cell.kernel_spec(x.dtype, x.device)
        if spec is None or spec.mode != "lstm" or ragged_cpu_path(spec, x) != "fused-padded":
            return None
        specs.append(spec)
    return specs


def run_padded_stack(
    specs: Sequence[KernelSpec], x: Tensor, lengths: Tensor, states: Sequence[LSTMState] | None
) -> tuple[Tensor, list[LSTMState]] | None:
    """Every layer (``specs`` from :func:`padded_stack_specs`) over batch-first ``x`` with
    ``lengths``, from ``states`` (one per layer; ``None``: zeros).  Returns the top layer's
    outputs (B, T, H), zero past each length, and each layer's final state; ``None`` when
    no step runs (every length zero: the layer-by-layer path handles it)."""
    if states is not None and torch.is_grad_enabled() and any(t.requires_grad for s in states for t in s):
        return None  # autograd records the calls: the layer-by-layer path
    plan = _plan(lengths, x.shape[1], x.device)
    if plan.steps == 0:
        return None
    weights = [list(_indicator_weights(s.fused_weights or ())) for s in specs]
    if states is None:
        batch = x.shape[0]
        states = [LSTMState(*(2 * (x.new_zeros(batch, w[1].shape[1]),))) for w in weights]
    h0, c0 = [s.h for s in states], [s.c for s in states]
    ext = _ext.extension()
    run = _run_python if ext is None else ext.padded_lstm_stack
    out, cells, last = run(x, plan.outside, plan.padded_rows, plan.last_rows, plan.empty, weights, h0, c0)
    return out, [LSTMState(c, h) for c, h in zip(cells, last)]


def _run_python(
    x: Tensor,
    outside: Tensor,
    padded_rows: Tensor,
    last_rows: Tensor,
    empty: Tensor | None,
    weights: list[list[Tensor]],
    h0: list[Tensor],
    c0: list[Tensor],
) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The layers' glue in Python: what the extension's ``padded_lstm_stack`` does."""
    steps, batch = outside.shape[0], x.shape[0]
    indicator = outside.to(x.dtype)
    layer_in = x[:, :steps].transpose(0, 1)
    cells, last = [], []
    for k, w in enumerate(weights):
        inputs = torch.cat([layer_in, indicator], 2)
        if k == 0:  # whatever the caller's padding holds must not reach a product
            inputs.view(steps * batch, -1)[:, :-1].index_fill_(0, padded_rows, 0.0)
        out, _, c = _VF.lstm(inputs, (h0[k].unsqueeze(0), c0[k].unsqueeze(0)), w, True, 1, 0.0, False, False, False)
        h = out.view(steps * batch, -1).index_select(0, last_rows)
        last.append(h if empty is None else torch.where(empty, h0[k], h))
        cells.append(c[0])
        layer_in = out
    if steps < x.shape[1]:
        layer_in = torch.constant_pad_nd(layer_in, (0, 0, 0, 0, 0, x.shape[1] - steps))
    return layer_in.transpose(0, 1), cells, last
