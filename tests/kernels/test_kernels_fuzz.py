"""A differential fuzzer: random layers and stacks on every path against the reference loop.

Each seed draws one configuration (cell kind and options, sizes, layers, directions,
residual connections, ragged lengths with zeros, dtype, autograd / ``no_grad`` /
``inference_mode``, the C++ extension on or off, NaN in the padding, a NaN or an infinity at a
valid step, a weight written through ``.data`` between two calls) and checks:

* :func:`test_layer_paths_agree`: one layer on every path that can run it
  (``kernel_paths.PATHS``) against :func:`rnnfuse.kernels.run_loop`: outputs, final state and
  the gradients of the input, the initial state and every parameter;
* :func:`test_stack_agrees`: a :class:`rnnfuse.StackedRNN` (what users call: the dispatch,
  the padded stack) against the same stack written with the loop.

Tolerances: float32 2e-5, float64 1e-12, relative and absolute (the latter times the largest
magnitude in the tensor: rounding scales with the terms summed), NaN where the loop has NaN;
outputs past a length exactly zero.  A few hundred seeds run in the default suite; set
``RNNFUSE_FUZZ_OFFSET`` to draw other seeds, and the ``slow`` tests run thousands more.  A
failure names its seed: rerun it with ``-k "seed-NNN"``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from kernel_paths import PATHS, assert_same, assert_zero_past, grad_mode, leaves, loss_of, path_runs
from torch.utils._pytree import tree_map

from rnnfuse import StackedRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.cells.base import RecurrentCell
from rnnfuse.kernels import _ext, run_loop
from rnnfuse.state import LSTMState

OFFSET = int(os.environ.get("RNNFUSE_FUZZ_OFFSET", "0"))
LAYER_SEEDS = 300
STACK_SEEDS = 150
SLOW_SEEDS = 1000
TOL = {torch.float32: 2e-5, torch.float64: 1e-12}


@dataclass
class Inputs:
    """A batch drawn for a configuration."""

    x: torch.Tensor
    lengths: torch.Tensor | None
    mode: str  # "grad", "no_grad" or "inference"
    write: bool  # a weight written through .data between two calls
    extension: bool
    notes: list[str] = field(default_factory=list)


def _cell(rng: random.Random, input_size: int, hidden: int) -> RecurrentCell:
    """A random cell: kind and options."""
    kind = rng.choice(["lstm", "lstm", "gru", "rnn"])
    bias = rng.random() > 0.1
    if kind == "lstm":
        proj = rng.randint(1, hidden) if rng.random() < 0.25 else None
        return LSTMCell(
            input_size,
            hidden,
            forget_bias=rng.choice([0.0, 1.0]),
            peepholes=rng.random() < 0.25,
            proj_size=proj,
            cell_clip=rng.choice([None, None, None, 0.5]),
            proj_clip=rng.choice([None, 0.3]) if proj else None,
            bias=bias,
        )
    if kind == "gru":
        return GRUCell(input_size, hidden, reset_after=rng.random() < 0.6, bias=bias)
    return RNNCell(input_size, hidden, nonlinearity=rng.choice(["tanh", "tanh", "relu"]), bias=bias)


def _init(rng: random.Random, module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module`` in ``dtype`` with weights uniform in ``±scale`` (large ones saturate gates)."""
    scale = rng.choice([0.3, 0.6, 1.0, 3.0])
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    module.to(dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_((torch.rand(p.shape, generator=gen, dtype=dtype) * 2 - 1) * scale)
    return module


def _inputs(rng: random.Random, batch: int, features: int, dtype: torch.dtype) -> Inputs:
    """Input, lengths (``None`` or ints in ``0..T`` with the full length and zero likely),
    what may sit in the padding and at valid steps, and how the calls run."""
    steps = rng.randint(1, 7)
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    x = torch.randn(batch, steps, features, generator=gen, dtype=dtype) * rng.choice(
        [0.5, 1.0, 3.0]
    )
    lengths = None
    notes = []
    if rng.random() < 0.8:
        values = [rng.choice([0, steps, rng.randint(0, steps)]) for _ in range(batch)]
        lengths = torch.tensor(values)
        if rng.random() < 0.5:
            past = torch.arange(steps).unsqueeze(0) >= lengths.unsqueeze(1)
            x[past] = rng.choice([float("nan"), float("inf"), -float("inf")])
            notes.append("junk in the padding")
    valid = [
        (b, t) for b in range(batch) for t in range(steps) if lengths is None or t < int(lengths[b])
    ]
    if valid and rng.random() < 0.15:
        b, t = rng.choice(valid)
        x[b, t, rng.randrange(features)] = rng.choice([float("nan"), float("inf"), -float("inf")])
        notes.append("non-finite at a valid step")
    mode = rng.choice(["grad", "grad", "no_grad", "inference"])
    extension = rng.random() < 0.7 and _ext.available()
    return Inputs(x, lengths, mode, rng.random() < 0.3, extension, notes)


def _write(rng: random.Random, module: torch.nn.Module) -> None:
    """Change one parameter through ``.data`` (no version counter sees it)."""
    params = list(module.parameters())
    p = rng.choice(params)
    if rng.random() < 0.5:
        p.data.mul_(rng.choice([-1.0, 0.5, 2.0]))
    else:
        p.data.add_(torch.randn(p.shape, dtype=p.dtype))


def _extension(on: bool) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if on else _ext.disabled()


def _random_state(rng: random.Random, template: Any, dtype: torch.dtype) -> Any:
    gen = torch.Generator().manual_seed(rng.randrange(2**31))
    return tree_map(lambda t: 0.5 * torch.randn(t.shape, generator=gen, dtype=dtype), template)


# ---------------------------------------------------------------------------------- layers


def _run_layer_path(
    path: str, cell: RecurrentCell, inputs: Inputs, state: Any, reverse: bool
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Outputs, final state and (mode ``grad``) gradients of one path."""
    x = inputs.x.detach().requires_grad_(inputs.mode == "grad")
    state_in = [t.detach().requires_grad_(inputs.mode == "grad") for t in leaves(state)]
    start = LSTMState(*state_in) if isinstance(state, LSTMState) else state_in[0]
    with grad_mode(inputs.mode), _extension(inputs.extension or path == "bptt-compiled"):
        y, final = PATHS[path](cell, x, inputs.lengths, start, reverse)
    if inputs.mode != "grad":
        return y, leaves(final), []
    wrt = [x, *state_in, *cell.parameters()]
    grads = torch.autograd.grad(loss_of(y, final), wrt, allow_unused=True)
    return y, leaves(final), [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt)]


def _layer_seed(seed: int) -> None:
    rng = random.Random(seed)
    dtype = rng.choice([torch.float32, torch.float64])
    features, hidden, batch = rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 10)
    cell = _init(rng, _cell(rng, features, hidden), dtype)
    inputs = _inputs(rng, batch, features, dtype)
    reverse = rng.random() < 0.4
    state = _random_state(rng, cell.initial_state(batch, dtype=dtype), dtype)
    ragged = inputs.lengths is not None
    paths = [p for p in PATHS if path_runs(p, cell, ragged)]
    where = f"seed {seed}: {cell!r}, x {tuple(inputs.x.shape)}, lengths {inputs.lengths}, {inputs.mode}, {inputs.notes}"
    if inputs.write:
        for path in paths:  # a first call on every path, then a weight changes under them
            _run_layer_path(path, cell, inputs, state, reverse)
        _write(rng, cell)
    reference = _run_layer_path("loop", cell, inputs, state, reverse)
    tol = TOL[dtype]
    for path in paths:
        y, final, grads = _run_layer_path(path, cell, inputs, state, reverse)
        assert_same(
            [y, *final],
            [reference[0], *reference[1]],
            tol,
            f"{where}: {path} outputs and state",
            scaled=True,
        )
        assert_same(grads, reference[2], tol, f"{where}: {path} gradients", scaled=True)
        assert_zero_past(y, inputs.lengths, f"{where}: {path}")


def _slow_seeds(start: int, block: int) -> range:
    """The ``block``-th tenth of the :data:`SLOW_SEEDS` seeds from ``start`` (and :data:`OFFSET`)."""
    first = start + OFFSET
    return range(first + block * SLOW_SEEDS // 10, first + (block + 1) * SLOW_SEEDS // 10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed", [pytest.param(OFFSET + s, id=f"seed-{OFFSET + s}") for s in range(LAYER_SEEDS)]
)
def test_layer_paths_agree(seed):
    _layer_seed(seed)


@pytest.mark.slow
@pytest.mark.parametrize("block", range(10))
def test_layer_paths_agree_many_seeds(block):
    for seed in _slow_seeds(100_000, block):
        _layer_seed(seed)


# ---------------------------------------------------------------------------------- stacks


def _stack(rng: random.Random, features: int) -> StackedRNN:
    """A random stack: layers of random kinds and sizes, some bidirectional, residual
    connections where a layer's input and output sizes match (layer 0 included); or, for
    the padded stack, plain LSTMs in one direction."""
    layers = rng.randint(1, 3)
    plain = rng.random() < 0.3
    fw: list[RecurrentCell] = []
    bw: list[RecurrentCell | None] = []
    directions, size = [], features
    for _ in range(layers):
        hidden = rng.choice([size, rng.randint(1, 5)])
        both = not plain and rng.random() < 0.3
        forget_bias = rng.choice([0.0, 1.0])
        fw.append(
            LSTMCell(size, hidden, forget_bias=forget_bias) if plain else _cell(rng, size, hidden)
        )
        bw.append(copy.deepcopy(fw[-1]) if both else None)  # the same options (weights drawn later)
        directions.append(both)
        size = fw[-1].output_size * (2 if both else 1)
    residual = [
        _fits_residual(fw[k], directions[k]) and rng.random() < (0.15 if plain else 0.5)
        for k in range(layers)
    ]
    return StackedRNN.from_cells(
        fw, backward_cells=bw if any(directions) else None, residual=residual
    )


def _fits_residual(cell: RecurrentCell, both: bool) -> bool:
    return cell.input_size == cell.output_size * (2 if both else 1)


def _loop_stack(
    stack: StackedRNN, x: torch.Tensor, lengths: torch.Tensor | None, start: Any
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The stack written with the reference loop: outputs and the final states' leaves per
    layer (forward then backward)."""
    fw_start, bw_start = stack._split_state(start)
    layer_in, finals = x, []
    for k, cell in enumerate(stack.layers):
        out, final = run_loop(cell, layer_in, lengths, fw_start[k])
        finals += leaves(final)
        backward = stack.backward_cell(k)
        if backward is not None:
            out_bw, final_bw = run_loop(backward, layer_in, lengths, bw_start[k], True)
            finals += leaves(final_bw)
            out = torch.cat([out, out_bw], -1)
        if stack.residual[k]:
            skip = layer_in
            if lengths is not None:
                inside = torch.arange(x.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
                skip = torch.where(inside.unsqueeze(2), layer_in, 0.0)
            out = out + skip
        layer_in = out
    return layer_in, finals


def _state_leaves(stack: StackedRNN, state: Any) -> list[torch.Tensor]:
    fw, bw = stack._split_state(state)
    out = []
    for k in range(stack.num_layers):
        out += leaves(fw[k])
        if k in bw:
            out += leaves(bw[k])
    return out


def _run_stack(
    stack: StackedRNN, inputs: Inputs, start: Any, reference: bool
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    x = inputs.x.detach().requires_grad_(inputs.mode == "grad")
    with grad_mode(inputs.mode), _extension(inputs.extension):
        if reference:
            y, finals = _loop_stack(stack, x, inputs.lengths, start)
        else:
            y, state = stack(x, inputs.lengths, start)
            finals = _state_leaves(stack, state)
    if inputs.mode != "grad":
        return y, finals, []
    loss = loss_of(y, finals[0]) + sum((0.3 * t * t).sum() for t in finals[1:])
    wrt = [x, *stack.parameters()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    return y, finals, [torch.zeros_like(t) if g is None else g for g, t in zip(grads, wrt)]


def _stack_seed(seed: int) -> None:
    rng = random.Random(seed)
    dtype = rng.choice([torch.float32, torch.float64])
    features, batch = rng.randint(1, 5), rng.randint(1, 10)
    stack = _init(rng, _stack(rng, features), dtype).eval()
    inputs = _inputs(rng, batch, features, dtype)
    start = stack.initial_state(batch, dtype=dtype)
    if rng.random() < 0.3:
        start = _random_state(rng, start, dtype)
    where = f"seed {seed}: {stack!r}, x {tuple(inputs.x.shape)}, lengths {inputs.lengths}, {inputs.mode}, {inputs.notes}"
    if inputs.write:
        _run_stack(stack, inputs, start, reference=False)
        _write(rng, stack)
    got = _run_stack(stack, inputs, start, reference=False)
    expected = _run_stack(stack, inputs, start, reference=True)
    tol = TOL[dtype]
    assert_same(
        [got[0], *got[1]],
        [expected[0], *expected[1]],
        tol,
        f"{where}: outputs and state",
        scaled=True,
    )
    assert_same(got[2], expected[2], tol, f"{where}: gradients", scaled=True)
    assert_zero_past(got[0], inputs.lengths, where)


@pytest.mark.slow
@pytest.mark.parametrize(
    "seed", [pytest.param(OFFSET + s, id=f"seed-{OFFSET + s}") for s in range(STACK_SEEDS)]
)
def test_stack_agrees(seed):
    _stack_seed(seed)


@pytest.mark.slow
@pytest.mark.parametrize("block", range(10))
def test_stack_agrees_many_seeds(block):
    for seed in _slow_seeds(200_000, block):
        _stack_seed(seed)
