"""NaN and inf through every path a layer can take, against ``torch.nn`` run one sequence at a time.

The semantics every path must keep (TF1's ``dynamic_rnn``, PyTorch's LSTM/GRU/RNN):

* a NaN or an infinity at a valid step flows on as through ``nn.LSTM``/``nn.GRU`` run on
  that sequence alone (NaN stays NaN, ``σ(±inf)`` is 0 or 1), values and gradients;
* outputs past each length are exactly zero, whatever the inputs and the state hold;
* what the padding of the input holds (NaN, inf) reaches no output and no gradient.

The paths are forced by name (``kernel_paths.PATHS``): the fused kernel, the fused
segments (two segments: sequences run on over the padding), the padded call, the C++ BPTT
loop and its pure-PyTorch fallback, the reference loop, the dispatch (``run_layer``, with and
without the extension) and the ``rnnfuse::layer`` operator; each with autograd, under
``no_grad`` and under ``inference_mode``.  A stack in one padded call and a stack compiled
by ``torch.compile`` are checked as well.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from kernel_paths import (
    PATHS,
    assert_same,
    assert_zero_past,
    grad_mode,
    leaves,
    path_runs,
    run_with_grads,
    torch_per_sequence,
)

from rnnfuse import StackedRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.kernels import _ext, run_loop, select_path
from rnnfuse.kernels.dispatch import padded_stack_specs
from rnnfuse.state import LSTMState

B, T, F, H = 5, 6, 3, 4
LENGTHS = [6, 0, 3, 5, 1]  # three distinct positive lengths: two segments leave one inside
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
NAN, INF = float("nan"), float("inf")

CELLS = {
    "lstm": lambda: LSTMCell(F, H, forget_bias=1.0),
    "gru": lambda: GRUCell(F, H),
    "rnn-tanh": lambda: RNNCell(F, H),
}


def _past(lengths: list[int]) -> torch.Tensor:
    return torch.arange(T).unsqueeze(0) >= torch.tensor(lengths).unsqueeze(1)


def _inputs(
    scenario: str, dtype: torch.dtype, lengths: list[int] | None, seed: int = 0
) -> torch.Tensor:
    """``x`` (B, T, F) for a scenario; the padding (past each length) holds NaN and inf in all."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, F, generator=gen, dtype=dtype)
    if scenario == "nan-valid":
        x[2, 1, 0] = NAN
    elif scenario == "inf-valid":
        x[3, 2, 0], x[0, 4, 1] = INF, -INF
    elif scenario == "mixed-inf-last":  # at a last valid step: inf - inf is NaN in some gates only
        x[3, 4, 0], x[3, 4, 1], x[2, 2, 1], x[2, 2, 2] = INF, -INF, -INF, INF
    elif scenario == "all-nan":
        x.fill_(NAN)
    if lengths is not None:
        past = _past(lengths)
        x[past] = NAN
        x[:, -1][past[:, -1]] = INF
    return x


def _state(cell, dtype: torch.dtype, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    parts = [
        0.5 * torch.randn(t.shape, generator=gen, dtype=dtype)
        for t in leaves(cell.initial_state(B, dtype=dtype))
    ]
    return LSTMState(*parts) if len(parts) == 2 else parts[0]


def _cell(name: str, dtype: torch.dtype):
    torch.manual_seed(2)
    return CELLS[name]().to(dtype)


SCENARIOS = ["nan-valid", "inf-valid", "mixed-inf-last", "padding-only", "all-nan"]
DTYPES = [torch.float32, torch.float64]


def _runs(paths: list[str], ragged: bool) -> list[tuple[str, str]]:
    """The (path, cell) pairs where the path runs the cell (the C++ loop where it is built)."""
    return [(p, n) for p in paths for n in CELLS if path_runs(p, CELLS[n](), ragged)]


def _check_path(
    path: str, name: str, scenario: str, dtype: torch.dtype, mode: str, lengths: list[int] | None
) -> None:
    cell = _cell(name, dtype)
    lens = None if lengths is None else torch.tensor(lengths)
    x, state = _inputs(scenario, dtype, lengths), _state(cell, dtype)
    tol = TOL[dtype]
    if mode == "grad":
        y, final, grads = run_with_grads(PATHS[path], cell, x, lens, state)
        y_ref, final_ref, grads_ref = torch_per_sequence(cell, x, lens, state, grads=True)
        assert_same(grads, grads_ref, tol, f"{path} gradients")
        if scenario == "padding-only":
            assert all(bool(torch.isfinite(g).all()) for g in grads), (
                f"{path}: NaN from the padding in a gradient"
            )
            assert bool((grads[0][_past(lengths)] == 0).all()) if lengths else True
    else:
        with grad_mode(mode):
            y, final_state = PATHS[path](cell, x, lens, state, False)
        final = leaves(final_state)
        y_ref, final_ref, _ = torch_per_sequence(cell, x, lens, state, grads=False)
    assert_same([y, *final], [y_ref, *final_ref], tol, f"{path} outputs and final state")
    assert_zero_past(y, lens, path)


@pytest.mark.parametrize("mode", ["grad", "no_grad", "inference"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize(("path", "name"), _runs([p for p in PATHS if p != "fused"], ragged=True))
def test_ragged_path_equals_torch_per_sequence(path, name, scenario, dtype, mode):
    _check_path(path, name, scenario, dtype, mode, LENGTHS)


@pytest.mark.parametrize("mode", ["grad", "no_grad"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("scenario", ["nan-valid", "inf-valid"])
@pytest.mark.parametrize(
    ("path", "name"),
    _runs(["fused", "bptt-compiled", "bptt-fallback", "loop", "run_layer", "op"], ragged=False),
)
def test_full_batch_path_equals_torch(path, name, scenario, dtype, mode):
    _check_path(path, name, scenario, dtype, mode, None)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("path", ["bptt-compiled", "bptt-fallback", "run_layer", "op"])
def test_reset_before_gru_equals_the_loop(path, scenario, dtype):
    """A reset-before GRU (no ``torch.nn`` equivalent) on the BPTT kernel against the loop."""
    cell = GRUCell(F, H, reset_after=False).to(dtype)
    if not path_runs(path, cell, True):
        pytest.skip("the C++ extension is not built here")
    lens = torch.tensor(LENGTHS)
    x, state = _inputs(scenario, dtype, LENGTHS), _state(cell, dtype)
    got = run_with_grads(PATHS[path], cell, x, lens, state)
    expected = run_with_grads(run_loop, cell, x, lens, state)
    for a, b, what in zip(got, expected, ["outputs", "final state", "gradients"]):
        assert_same(
            a if isinstance(a, list) else [a], b if isinstance(b, list) else [b], TOL[dtype], what
        )
    assert_zero_past(got[0], lens, path)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("extension", [True, False], ids=["extension", "no-extension"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_padded_stack_equals_torch_per_sequence(scenario, dtype, extension, threads):
    """A small ragged LSTM stack without gradients runs in one padded call (the C++ glue or
    its Python twin): the same numbers as ``nn.LSTM(num_layers=2)`` per sequence."""
    if extension and not _ext.available():
        pytest.skip("the C++ extension is not built here")
    torch.manual_seed(3)
    stack = StackedRNN(F, [H, H], cell="lstm").to(dtype).eval()
    module = stack.to_torch()
    lens = torch.tensor(LENGTHS)
    x = _inputs(scenario, dtype, LENGTHS)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad(), contextlib.nullcontext() if extension else _ext.disabled():
            assert padded_stack_specs(stack.layers, x, lens) is not None
            y, state = stack(x, lens)
    finally:
        torch.set_num_threads(previous)
    outs, hs, cs = [], [], []
    with torch.no_grad():
        for b, n in enumerate(LENGTHS):
            if n == 0:
                outs.append(x.new_zeros(1, T, H))
                hs.append(x.new_zeros(2, 1, H))
                cs.append(x.new_zeros(2, 1, H))
                continue
            out, (h, c) = module(x[b : b + 1, :n])
            outs.append(torch.nn.functional.pad(out, (0, 0, 0, T - n)))
            hs.append(h)
            cs.append(c)
    got = [y, *[t for s in state for t in (s.c, s.h)]]
    h_ref, c_ref = torch.cat(hs, 1), torch.cat(cs, 1)
    expected = [torch.cat(outs), *[t for k in range(2) for t in (c_ref[k], h_ref[k])]]
    assert_same(got, expected, TOL[dtype], "padded stack")
    assert_zero_past(y, lens, "padded stack")


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_residual_on_layer_zero_adds_no_padding(cell):
    """``residual`` on layer 0 adds the input's valid steps only: outputs stay zero past each
    length (NaN in the padding included) and no gradient sees the padding."""
    torch.manual_seed(4)
    stack = StackedRNN(F, [F, F], cell=cell, residual=[True, True]).double()
    lens = torch.tensor(LENGTHS)
    x = _inputs("padding-only", torch.float64, LENGTHS).requires_grad_()
    y, _ = stack(x, lens)
    assert_zero_past(y, lens, "residual stack")
    y.sum().backward()
    assert bool(torch.isfinite(x.grad).all()) and bool((x.grad[_past(LENGTHS)] == 0).all())
    assert all(bool(torch.isfinite(p.grad).all()) for p in stack.parameters())
    clean = x.detach().masked_fill(_past(LENGTHS).unsqueeze(2), 0.0)
    torch.testing.assert_close(stack(clean, lens)[0], y, atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["nan-valid", "padding-only"])
def test_compiled_stack_keeps_the_semantics(scenario):
    """Under ``torch.compile`` (the ``rnnfuse::layer`` operator at run time) the values and
    gradients are eager's, NaN where eager has NaN, zero past each length."""
    torch.manual_seed(5)
    stack = StackedRNN.from_cells([LSTMCell(F, H), GRUCell(H, H)])
    lens = torch.tensor(LENGTHS)
    x = _inputs(scenario, torch.float32, LENGTHS)
    compiled = torch.compile(stack, backend="aot_eager", fullgraph=True)

    def run(model):
        xx = x.clone().requires_grad_()
        y, state = model(xx, lens)
        grads = torch.autograd.grad(
            (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum(), [xx, *stack.parameters()]
        )
        return [y, *grads]

    got, expected = run(compiled), run(stack)
    assert_same(got, expected, 2e-5, "compiled stack")
    assert_zero_past(got[0], lens, "compiled stack")
    if scenario == "padding-only":
        assert all(bool(torch.isfinite(t).all()) for t in got)


def test_a_nan_at_a_valid_step_gives_nan_on_the_dispatched_training_path():
    """The path a training step takes for a ragged LSTM (the C++ BPTT loop where it is
    built) keeps a NaN at a valid step, as ``nn.LSTM`` does: it is not turned into zeros."""
    cell = _cell("lstm", torch.float32)
    x = _inputs("nan-valid", torch.float32, LENGTHS).requires_grad_()
    lens = torch.tensor(LENGTHS)
    assert select_path(cell, x, lens) in ("bptt", "fused-segments")
    y, final = PATHS["run_layer"](cell, x, lens, cell.initial_state(B), False)
    assert bool(torch.isnan(y[2, 1:3]).all()) and bool(torch.isnan(final.h[2]).all())
    assert bool((y[2, 3:] == 0).all())
