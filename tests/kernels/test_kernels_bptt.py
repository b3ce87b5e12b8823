"""The hand-written BPTT kernels (the C++ extension and its pure-PyTorch fallback, the
bptt_impl fixture) and the step functions of the device loop, against the reference
loop and by finite differences (gradcheck, float64); autocast and devices."""

from __future__ import annotations

import contextlib

import pytest
import torch
from kernel_cases import (
    BPTT_LSTM,
    CELLS,
    DTYPES,
    LENGTHS,
    LENS,
    B,
    F,
    H,
    T,
    _leaves,
    _run,
    assert_matches_loop,
)

from rnnfuse.cells import GRUCell, LSTMCell
from rnnfuse.kernels import _ext, run_layer, run_loop
from rnnfuse.kernels.bptt import run_bptt_gru, run_bptt_lstm
from rnnfuse.kernels.bptt_gru import GRUFunction
from rnnfuse.kernels.bptt_lstm import LSTMFunction
from rnnfuse.kernels.compiled_steps import forced as forced_steps
from rnnfuse.kernels.compiled_steps import step_kernels
from rnnfuse.kernels.layout import make_layout
from rnnfuse.kernels.steps import step_rows
from rnnfuse.state import LSTMState


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
@pytest.mark.parametrize("name", BPTT_LSTM)
def test_bptt_lstm_equals_loop(name, lengths, reverse, dtype, bptt_impl):
    assert_matches_loop(run_bptt_lstm, name, lengths, reverse, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
def test_bptt_gru_equals_loop(lengths, reverse, dtype, bptt_impl):
    assert_matches_loop(run_bptt_gru, "gru-reset-before", lengths, reverse, dtype)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm-all", "gru-reset-before"])
def test_bptt_products_split_over_threads_equal_loop(name, two_threads, bptt_impl):
    """With two threads the C++ loop splits each step's product by columns over them (at
    least 2^20 multiply-adds): values and gradients equal the loop's, ragged and reversed,
    and under inference mode."""
    big = {
        "lstm-all": lambda: LSTMCell(
            8, 128, peepholes=True, proj_size=96, cell_clip=2.0, proj_clip=1.5
        ),
        "gru-reset-before": lambda: GRUCell(8, 128, reset_after=False),
    }[name]
    gen = torch.Generator().manual_seed(4)
    cell = big().double()
    batch = 64
    x = torch.randn(batch, 5, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    lens = torch.randint(0, 6, (batch,), generator=gen)
    zero = cell.initial_state(batch, dtype=torch.float64)
    parts = [
        (0.5 * torch.randn(t.shape, generator=gen, dtype=torch.float64)).requires_grad_()
        for t in _leaves(zero)
    ]
    state = LSTMState(*parts) if isinstance(zero, LSTMState) else parts[0]
    run = run_bptt_lstm if name.startswith("lstm") else run_bptt_gru
    y, s, g = _run(run, cell, x, lens, state, True)
    y_ref, s_ref, g_ref = _run(run_loop, cell, x, lens, state, True)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    for a, b in zip([*s, *g], [*s_ref, *g_ref]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    with torch.inference_mode():
        y_inf, _ = run(cell, x.detach(), lens, zero, False)
    torch.testing.assert_close(
        y_inf, run_loop(cell, x.detach(), lens, zero, False)[0], atol=1e-10, rtol=1e-10
    )


@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
@pytest.mark.parametrize("name", [*BPTT_LSTM, "gru-reset-before"])
def test_step_functions_of_the_device_loop_equal_loop(name, lengths, reverse):
    """The step functions that CUDA compiles (one kernel per elementwise part), run
    uncompiled in the Python loop: the same equations as the in-place operations."""
    fn = run_bptt_gru if name.startswith("gru") else run_bptt_lstm
    with _ext.disabled(), forced_steps(None):
        assert step_kernels(torch.zeros(1)) is not None
        assert_matches_loop(fn, name, lengths, reverse, torch.float64)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lstm-all", "gru-reset-before"])
def test_compiled_step_functions_write_their_buffers(name):
    """Traced by torch.compile (aot_eager: the graph, without generating code), the step
    functions' writes into the loop's buffers (views of them) survive compilation."""
    fn = run_bptt_gru if name.startswith("gru") else run_bptt_lstm
    with _ext.disabled(), forced_steps("aot_eager"):
        assert_matches_loop(fn, name, [7, 7, 5, 5, 6, 7], True, torch.float64)


@pytest.mark.slow
def test_a_step_that_cannot_compile_falls_back_to_plain_operations():
    """A compiler failure on the first call warns and runs the plain operations."""

    def broken_compiler(graph, example_inputs):
        raise RuntimeError("no code generator here")

    with _ext.disabled(), forced_steps(broken_compiler):
        with pytest.warns(RuntimeWarning, match="compiling the BPTT step"):
            assert_matches_loop(run_bptt_gru, "gru-reset-before", LENGTHS, False, torch.float64)


def test_compiled_steps_only_on_cuda_with_triton(monkeypatch):
    from rnnfuse.kernels import compiled_steps

    assert step_kernels(torch.zeros(1)) is None  # CPU: the C++ loop or the plain operations
    monkeypatch.setattr(compiled_steps, "_has_triton", lambda: True)
    assert compiled_steps.compiles_steps("cuda") and not compiled_steps.compiles_steps("cpu")
    monkeypatch.setenv("RNNFUSE_NO_COMPILED_STEPS", "1")
    assert not compiled_steps.compiles_steps("cuda")
    monkeypatch.delenv("RNNFUSE_NO_COMPILED_STEPS")
    monkeypatch.setattr(compiled_steps, "_has_triton", lambda: False)
    assert not compiled_steps.compiles_steps("cuda")


@pytest.mark.parametrize("name", ["lstm-all", "lstm-peepholes", "gru-reset-before"])
def test_compiled_and_fallback_kernels_agree_on_a_wide_layer(name):
    """Hidden sizes that are not a multiple of the vector width, more rows than one task."""
    if not _ext.available():
        pytest.skip("the C++ BPTT kernels could not be built here")
    gen = torch.Generator().manual_seed(5)
    kind = "gru" if name.startswith("gru") else "lstm"
    opts = {"reset_after": False} if kind == "gru" else {"peepholes": True, "cell_clip": 0.8}
    if name == "lstm-all":
        opts.update(proj_size=13, proj_clip=0.3)
    cell = (GRUCell if kind == "gru" else LSTMCell)(F, 37, **opts).double()
    x = torch.randn(300, T, F, generator=gen, dtype=torch.float64).requires_grad_()
    lens = torch.randint(0, T + 1, (300,), generator=gen)
    results = []
    for ctx in (_ext.disabled, contextlib.nullcontext):
        with ctx():
            y, final = run_layer(cell, x, lens, cell.initial_state(300, dtype=torch.float64), True)
            loss = (y * y).sum() + sum((t * t).sum() for t in _leaves(final))
            results.append(
                [y, *_leaves(final), *torch.autograd.grad(loss, [x, *cell.parameters()])]
            )
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_many_sequences_many_lengths(bptt_impl):
    """More distinct lengths than segments, every length 0..T present, float32."""
    gen = torch.Generator().manual_seed(3)
    lengths = torch.randperm(2 * (T + 1), generator=gen) % (T + 1)
    for name in ["lstm", "gru", "lstm-peepholes"]:
        cell = CELLS[name]()
        x = torch.randn(len(lengths), T, F, generator=gen)
        state = cell.initial_state(len(lengths))
        y_ref, s_ref = run_loop(cell, x, lengths, state)
        y, s = run_layer(cell, x, lengths, state)
        torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
        for a, b in zip(_leaves(s), _leaves(s_ref)):
            torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


# ------------------------------------------------------------ finite differences


def _packed_args(lengths, reverse=False):
    layout = make_layout(torch.tensor(lengths), T, reverse, None)
    return layout, step_rows(layout)


def test_gradcheck_lstm_function(bptt_impl):
    gen = torch.Generator().manual_seed(1)
    layout, steps = _packed_args([4, 0, 2, 3])
    n, hidden, proj = layout.in_index.numel(), 3, 2

    def leaf(*shape, scale=0.6):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).requires_grad_()

    for peep, weight_hr, clips in [
        (None, None, (None, None)),
        (leaf(3, hidden), leaf(proj, hidden), (2.0, 1.5)),
    ]:
        p = hidden if weight_hr is None else proj
        args = (
            leaf(n, F),
            leaf(4 * hidden, F),
            leaf(4 * hidden),
            leaf(4, hidden),
            leaf(4, p),
            leaf(4 * hidden, p),
            peep,
            weight_hr,
        )
        assert torch.autograd.gradcheck(
            lambda *a: LSTMFunction.apply(steps, layout.last_index, *clips, *a),
            args,
            eps=1e-6,
            atol=1e-6,
        )


@pytest.mark.parametrize(
    "peepholes, clip", [(False, None), (True, 0.3)], ids=["plain", "peepholes-clip"]
)
def test_bptt_lstm_step_equals_the_pure_step(peepholes, clip):
    """The kernel's in-place step (its own buffers, for speed) against the cell's pure
    step functions (lstm_step, built from lstm_cell_update and lstm_output)."""
    from rnnfuse.cells.lstm import LSTMOptions, lstm_step
    from rnnfuse.kernels.bptt_lstm import _cell_forward

    gen = torch.Generator().manual_seed(9)
    hidden = 4
    gates, c_prev, h_prev = (
        torch.randn(3, n, generator=gen, dtype=torch.float64) for n in (4 * hidden, hidden, hidden)
    )
    peep = torch.randn(3, hidden, generator=gen, dtype=torch.float64) if peepholes else None
    expected = lstm_step(
        gates,
        LSTMState(c_prev, 0 * h_prev),
        torch.zeros(4 * hidden, hidden, dtype=torch.float64),
        LSTMOptions(cell_clip=clip),
        None if peep is None else tuple(peep),
    )
    c, tanh_c, m = (torch.empty(3, hidden, dtype=torch.float64) for _ in range(3))
    _cell_forward(gates.clone(), c_prev, c, tanh_c, m, peep, clip)
    torch.testing.assert_close(c, expected.c)
    torch.testing.assert_close(m, expected.h)
    torch.testing.assert_close(tanh_c, torch.tanh(expected.c))


def test_gradcheck_gru_function(bptt_impl):
    gen = torch.Generator().manual_seed(2)
    layout, steps = _packed_args([3, 4, 0, 1])
    n, hidden = layout.in_index.numel(), 3
    args = [
        (0.6 * torch.randn(*s, generator=gen, dtype=torch.float64)).requires_grad_()
        for s in [(n, F), (3 * hidden, F), (3 * hidden,), (4, hidden), (3 * hidden, hidden)]
    ]
    assert torch.autograd.gradcheck(
        lambda *a: GRUFunction.apply(steps, layout.last_index, *a), args
    )


def test_double_backward_raises_a_clear_error():
    cell = GRUCell(F, H, reset_after=False)
    x = torch.randn(B, T, F, requires_grad=True)
    y, _ = run_layer(cell, x, None, cell.initial_state(B))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad((y * y).sum(), x, create_graph=True)
    (g,) = torch.autograd.grad((y * y).sum(), x)  # first order is fine
    assert g.shape == x.shape


@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
@pytest.mark.parametrize("name", ["lstm-peepholes", "lstm-proj", "gru-reset-before"])
def test_autocast_on_cells_the_bptt_kernels_serve(name, lengths):
    """The BPTT kernels' in-place steps take no part in autocast; under it those cells
    run as the loop does (no dtype mismatch)."""
    torch.manual_seed(7)
    cell = CELLS[name]()
    x = torch.randn(B, T, F, requires_grad=True)
    lens = None if lengths is None else torch.tensor(lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, s = run_layer(cell, x, lens, cell.initial_state(B))
        y_ref, s_ref = run_loop(cell, x, lens, cell.initial_state(B))
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(_leaves(s), _leaves(s_ref)):
        torch.testing.assert_close(a, b)
    y.float().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_full_batch_bptt_layout_is_on_the_inputs_device():
    """With lengths=None the packed layout's index tensors must live on x's device (a CUDA
    index_select refuses CPU indices); the meta device stands in for a GPU here."""
    from rnnfuse.kernels.bptt import _packed

    for device in ["meta", "cpu"]:
        layout = _packed(torch.zeros(2, 3, F, device=device), None, False)
        assert {t.device.type for t in (layout.in_index, layout.out_index, layout.last_index)} == {
            device
        }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["lstm-peepholes", "gru-reset-before"])
def test_full_batch_bptt_on_cuda(name):
    cell = CELLS[name]().cuda()
    x = torch.randn(B, T, F, device="cuda")
    y, _ = run_layer(cell, x, None, cell.initial_state(B, device="cuda"))
    y_ref, _ = run_loop(cell, x, None, cell.initial_state(B, device="cuda"))
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
