"""The fast paths of rnnfuse.kernels against the reference loop (run_loop).

Every path must give the loop's outputs, final states and gradients (of the input, the
initial state and every parameter), for every cell kind and option, full or ragged
(unsorted lengths including 0 and the full length), forwards and reversed, in float32 and
float64.  The hand-written backward passes are also checked by finite differences
(gradcheck, float64).
"""

from __future__ import annotations

import contextlib
import py_compile
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnfuse import StackedRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.cells.base import RecurrentCell
from rnnfuse.kernels import _ext, run_layer, run_loop, select_path
from rnnfuse.kernels.bptt import run_bptt_gru, run_bptt_lstm
from rnnfuse.kernels.bptt_gru import GRUFunction
from rnnfuse.kernels.bptt_lstm import LSTMFunction
from rnnfuse.kernels.compiled_steps import forced as forced_steps
from rnnfuse.kernels.compiled_steps import step_kernels
from rnnfuse.kernels.fused import run_fused_full
from rnnfuse.kernels.layout import make_layout, segment_bounds
from rnnfuse.kernels.padded import SATURATE, padded_runs, run_fused_padded
from rnnfuse.kernels.ragged import (
    SMALL_BATCH,
    SMALL_BATCH_ONE_THREAD,
    run_fused_packed,
    run_fused_segments,
)
from rnnfuse.kernels.steps import step_rows
from rnnfuse.state import LSTMState

ROOT = Path(__file__).resolve().parents[2]
B, T, F, H = 6, 7, 3, 5
LENGTHS = [7, 0, 3, 7, 1, 5]  # unsorted, with an empty and two full sequences

CELLS = {
    "lstm": lambda: LSTMCell(F, H),
    "lstm-forget-bias": lambda: LSTMCell(F, H, forget_bias=1.0),
    "lstm-proj": lambda: LSTMCell(F, H, proj_size=2, forget_bias=0.5),
    "lstm-peepholes": lambda: LSTMCell(F, H, peepholes=True),
    "lstm-cell-clip": lambda: LSTMCell(F, H, cell_clip=0.4),
    "lstm-all": lambda: LSTMCell(
        F, H, peepholes=True, proj_size=3, cell_clip=0.5, proj_clip=0.2, forget_bias=1.0
    ),
    "gru": lambda: GRUCell(F, H),
    "gru-reset-before": lambda: GRUCell(F, H, reset_after=False),
    "rnn-tanh": lambda: RNNCell(F, H),
    "rnn-relu": lambda: RNNCell(F, H, nonlinearity="relu"),
}
FUSED = ["lstm", "lstm-forget-bias", "lstm-proj", "gru", "rnn-tanh", "rnn-relu"]
BPTT_LSTM = [
    "lstm",
    "lstm-forget-bias",
    "lstm-proj",
    "lstm-peepholes",
    "lstm-cell-clip",
    "lstm-all",
]
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _leaves(state):
    return list(state) if isinstance(state, LSTMState) else [state]


def _random_state(cell, dtype, gen):
    state = cell.initial_state(B, dtype=dtype)
    parts = [
        (0.5 * torch.randn(t.shape, generator=gen, dtype=dtype)).requires_grad_()
        for t in _leaves(state)
    ]
    return LSTMState(*parts) if isinstance(state, LSTMState) else parts[0]


def _run(fn, cell, x, lengths, state, reverse):
    """Outputs, final state and the gradients of a loss touching all of them."""
    y, final = fn(cell, x, lengths, state, reverse)
    weights = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)
    loss = (y * weights).sum() + sum((0.7 * t * t).sum() for t in _leaves(final))
    inputs = [x, *_leaves(state), *cell.parameters()]
    return y, _leaves(final), torch.autograd.grad(loss, inputs)


def assert_matches_loop(fn, name, lengths, reverse, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cell = CELLS[name]().to(dtype)
    x = torch.randn(B, T, F, generator=gen, dtype=dtype).requires_grad_()
    lens = None if lengths is None else torch.tensor(lengths)
    state = _random_state(cell, dtype, gen)
    y_ref, s_ref, g_ref = _run(run_loop, cell, x, lens, state, reverse)
    y, s, g = _run(fn, cell, x, lens, state, reverse)
    tol = TOL[dtype]
    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    if lens is not None:
        past = torch.arange(T).unsqueeze(0) >= lens.unsqueeze(1)
        assert (y[past] == 0).all(), "outputs past a length must be exactly zero"
    for a, b in zip(s, s_ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    names = ["x", *[f"state{i}" for i in range(len(s))], *[n for n, _ in cell.named_parameters()]]
    for n, a, b in zip(names, g, g_ref):
        torch.testing.assert_close(
            a, b, atol=tol, rtol=tol, msg=lambda m, n=n: f"gradient of {n}: {m}"
        )


DTYPES = [torch.float32, torch.float64]
LENS = [None, LENGTHS]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
@pytest.mark.parametrize("name", list(CELLS))
def test_run_layer_equals_loop(name, lengths, reverse, dtype):
    assert_matches_loop(run_layer, name, lengths, reverse, dtype)


@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("name", FUSED)
def test_fused_full_equals_loop(name, reverse):
    assert_matches_loop(
        lambda c, x, lens, s, r: run_fused_full(c, x, s, r), name, None, reverse, torch.float64
    )


@pytest.mark.parametrize("max_segments", [1, 2, 3, 16])
@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("name", FUSED)
def test_fused_segments_equal_loop(name, reverse, max_segments):
    # 4 distinct positive lengths: 1-3 segments leave sequences ending inside a segment
    # (an LSTM's final c is then recomputed), 16 puts a boundary at every length
    def fn(c, x, lens, s, r):
        return run_fused_segments(c, x, lens, s, r, max_segments=max_segments)

    assert_matches_loop(fn, name, LENGTHS, reverse, torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name", FUSED)
def test_fused_packed_equals_loop(name, dtype):
    assert_matches_loop(run_fused_packed, name, LENGTHS, True, dtype)


PADDED = ["lstm", "lstm-forget-bias", "gru", "rnn-tanh"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fw", "bw"])
@pytest.mark.parametrize("lengths", [LENGTHS, [3, 1, 0, 2, 3, 1]], ids=["to-T", "all-short"])
@pytest.mark.parametrize("name", PADDED)
def test_fused_padded_equals_loop(name, lengths, reverse, dtype):
    """One call over the padding: outputs, final states (an LSTM's held c) and gradients."""
    assert_matches_loop(run_fused_padded, name, lengths, reverse, dtype)


@pytest.mark.parametrize("name", PADDED)
def test_fused_padded_ignores_what_the_padding_holds(name):
    """NaN and inf past the lengths reach no product: the same values and gradients as
    zeros there, and a zero gradient for the padding."""
    cell = CELLS[name]().double()
    gen = torch.Generator().manual_seed(6)
    lens = torch.tensor(LENGTHS)
    past = torch.arange(T).unsqueeze(0) >= lens.unsqueeze(1)
    clean = torch.randn(B, T, F, generator=gen, dtype=torch.float64).masked_fill(
        past.unsqueeze(2), 0.0
    )
    dirty = clean.masked_fill(past.unsqueeze(2), float("nan"))
    dirty[:, -1] = torch.where(past[:, -1:], float("inf"), dirty[:, -1])
    state = _random_state(cell, torch.float64, gen)
    runs = [
        _run(run_fused_padded, cell, x.requires_grad_(), lens, state, True) for x in (clean, dirty)
    ]
    (y, s, g), (y_dirty, s_dirty, g_dirty) = runs
    for a, b in zip([y, *s, *g], [y_dirty, *s_dirty, *g_dirty]):
        torch.testing.assert_close(b, a, atol=0, rtol=0)
    assert (g_dirty[0][past] == 0).all()


def _scaled_lstm(row_sum: float) -> LSTMCell:
    """An LSTM whose largest recurrent sum ``Σ|W_hh[r]| + |b[r]|`` is ``row_sum``."""
    cell = LSTMCell(F, H).double()
    with torch.no_grad():
        cell.weight_hh.fill_(row_sum / (2 * H))
        cell.bias.fill_(row_sum / 2)
    return cell


def test_fused_padded_holds_an_lstm_with_large_recurrent_sums():
    cell = _scaled_lstm(SATURATE - 1500)  # gates' sums up to 8,500: still saturated exactly
    spec = cell.kernel_spec(torch.float64, torch.device("cpu"))
    assert padded_runs(spec)
    gen = torch.Generator().manual_seed(8)
    x = torch.randn(B, T, F, generator=gen, dtype=torch.float64)
    lens = torch.tensor(LENGTHS)
    state = _random_state(cell, torch.float64, gen)
    (y, s), (y_ref, s_ref) = (
        fn(cell, x, lens, state, False) for fn in (run_fused_padded, run_loop)
    )
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    for a, b in zip(_leaves(s), _leaves(s_ref)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_fused_padded_refuses_what_it_cannot_hold(two_threads):
    too_large = _scaled_lstm(SATURATE)
    x, lens = torch.zeros(2, T, F, dtype=torch.float64), torch.tensor([T, 2])
    assert not padded_runs(too_large.kernel_spec(torch.float64, torch.device("cpu")))
    with pytest.raises(ValueError, match="recurrent sums stay below"):
        run_fused_padded(too_large, x, lens, too_large.initial_state(2, dtype=torch.float64), False)
    with torch.no_grad():  # the dispatch takes another exact path
        torch.set_num_threads(2)
        assert select_path(too_large, x, lens) != "fused-padded"
        assert select_path(RNNCell(F, H, nonlinearity="relu"), x.float(), lens) == "fused-segments"
        assert select_path(LSTMCell(F, H, proj_size=2), x.float(), lens) == "bptt"


def test_fused_padded_sees_weights_changed_in_place():
    """What the padded path derives from the weights (the bound, the indicator's input
    weights) is kept between inference calls, never past an in-place change."""
    cell = LSTMCell(F, H).double()
    x, lens = torch.randn(B, T, F, dtype=torch.float64), torch.tensor(LENGTHS)
    spec = lambda: cell.kernel_spec(torch.float64, torch.device("cpu"))  # noqa: E731
    state = cell.initial_state(B, dtype=torch.float64)
    with torch.no_grad():
        assert padded_runs(spec())
        run_fused_padded(cell, x, lens, state, False)
        cell.weight_ih.mul_(-2.0)  # an optimizer step, in place
        y, _ = run_fused_padded(cell, x, lens, state, False)
        torch.testing.assert_close(y, run_loop(cell, x, lens, state, False)[0])
        cell.weight_hh.fill_(SATURATE)
        assert not padded_runs(spec())


def test_fused_padded_keeps_no_reference_to_the_weights():
    """The padded path keeps nothing made from a cell's weights: they go when the cell does."""
    import gc
    import weakref

    cell = LSTMCell(F, H).double()
    with torch.no_grad():
        run_fused_padded(
            cell,
            torch.randn(B, T, F, dtype=torch.float64),
            torch.tensor(LENGTHS),
            cell.initial_state(B, dtype=torch.float64),
            False,
        )
    weights = [weakref.ref(cell.weight_ih), weakref.ref(cell.weight_hh)]
    del cell
    gc.collect()
    assert all(w() is None for w in weights)


def test_fused_padded_layers_chain_and_an_edited_output_is_cleared_again(two_threads):
    """A padded LSTM layer's output (zero past each length) feeds the next layer without
    clearing its padding again; written into since, it is cleared as any input."""
    torch.manual_seed(3)
    stack = StackedRNN(F, [H, H + 1], cell="lstm").double().eval()
    x, lens = torch.randn(B, T, F, dtype=torch.float64), torch.tensor(LENGTHS)
    with torch.no_grad():
        assert (
            select_path(stack.layers[1], torch.zeros(B, T, H, dtype=torch.float64), lens)
            == "fused-padded"
        )
        y, _ = stack(x, lens)
    y_ref, _ = stack(x.requires_grad_(), lens)  # with gradients: the C++ loop or the segments
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=1e-10)
    first, second = stack.layers
    with torch.no_grad():
        out, _ = run_fused_padded(
            first, x, lens, first.initial_state(B, dtype=torch.float64), False
        )
        clean, _ = run_fused_padded(
            second, out, lens, second.initial_state(B, dtype=torch.float64), False
        )
        out[torch.arange(T).unsqueeze(0) >= lens.unsqueeze(1)] = float(
            "nan"
        )  # in place: no longer clean
        edited, _ = run_fused_padded(
            second, out, lens, second.initial_state(B, dtype=torch.float64), False
        )
    torch.testing.assert_close(edited, clean, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["lstm", "lstm-forget-bias"])
def test_small_lstm_inference_batches_run_padded(name, two_threads):
    """With no gradient a small ragged LSTM batch takes one padded call (equal to the
    loop); with gradients, more than SMALL_BATCH sequences (SMALL_BATCH_ONE_THREAD with
    one thread), the token-exact paths."""
    cell = CELLS[name]()
    lens = torch.tensor(LENGTHS)
    x = torch.randn(B, T, F)
    with torch.no_grad():
        assert select_path(cell, x, lens) == "fused-padded"
        y, s = run_layer(cell, x, lens, cell.initial_state(B), True)
        y_ref, s_ref = run_loop(cell, x, lens, cell.initial_state(B), True)
        big = torch.randn(SMALL_BATCH + 1, T, F)
        assert select_path(cell, big, torch.arange(SMALL_BATCH + 1) % (T + 1)) != "fused-padded"
        assert select_path(CELLS["gru"](), x, lens) == "fused-segments"
        torch.set_num_threads(1)
        assert select_path(cell, x, lens) == "fused-padded"
        more = torch.randn(SMALL_BATCH_ONE_THREAD + 1, T, F)
        assert (
            select_path(cell, more, torch.arange(SMALL_BATCH_ONE_THREAD + 1) % (T + 1))
            != "fused-padded"
        )
        torch.set_num_threads(2)
        assert (
            select_path(cell, more, torch.arange(SMALL_BATCH_ONE_THREAD + 1) % (T + 1))
            == "fused-padded"
        )
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(_leaves(s), _leaves(s_ref)):
        torch.testing.assert_close(a, b)
    torch.set_num_threads(2)
    assert select_path(cell, x.requires_grad_(), lens) != "fused-padded"


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


@pytest.mark.parametrize("name", ["lstm-all", "gru-reset-before"])
def test_compiled_step_functions_write_their_buffers(name):
    """Traced by torch.compile (aot_eager: the graph, without generating code), the step
    functions' writes into the loop's buffers (views of them) survive compilation."""
    fn = run_bptt_gru if name.startswith("gru") else run_bptt_lstm
    with _ext.disabled(), forced_steps("aot_eager"):
        assert_matches_loop(fn, name, [7, 7, 5, 5, 6, 7], True, torch.float64)


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


PATH_FUNCTIONS = {
    "fused-segments": (run_fused_segments, "lstm"),
    "fused-padded": (run_fused_padded, "lstm"),
    "fused-packed": (run_fused_packed, "gru"),
    "bptt-lstm": (run_bptt_lstm, "lstm-all"),
    "bptt-gru": (run_bptt_gru, "gru-reset-before"),
}


@pytest.mark.parametrize(
    "lengths", [[0] * B, [], [3, 1, 0, 2, 3, 1]], ids=["all-empty", "no-batch", "short"]
)
@pytest.mark.parametrize("path", list(PATH_FUNCTIONS))
def test_edge_batches(path, lengths, bptt_impl):
    """Every sequence empty, an empty batch, and all sequences shorter than T."""
    fn, name = PATH_FUNCTIONS[path]
    cell = CELLS[name]()
    batch = len(lengths)
    x = torch.randn(batch, T, F, requires_grad=True)
    lens = torch.tensor(lengths, dtype=torch.int64)
    state = cell.initial_state(batch)
    y, s = fn(cell, x, lens, state, True)
    y_ref, s_ref = run_loop(cell, x, lens, state, True)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(_leaves(s), _leaves(s_ref)):
        torch.testing.assert_close(a, b)


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


GRADCHECK_PATHS = {
    # the segments with sequences ending inside a segment (their c recomputed)
    "segments": (
        [5, 2, 4, 3],
        lambda c, x, lens, s: run_fused_segments(c, x, lens, s, False, max_segments=2),
    ),
    # the padded call, reversed, an empty sequence (its c held through every step)
    "padded": ([5, 2, 0, 3], lambda c, x, lens, s: run_fused_padded(c, x, lens, s, True)),
}


@pytest.mark.parametrize("path", list(GRADCHECK_PATHS))
def test_gradcheck_fused_ragged_paths(path):
    lengths, run = GRADCHECK_PATHS[path]
    cell = LSTMCell(F, 3, forget_bias=0.5).double()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(4, 5, F, generator=gen, dtype=torch.float64).requires_grad_()
    lens = torch.tensor(lengths)
    state = LSTMState(
        *[torch.randn(4, 3, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2)]
    )

    def fn(x, c, h):
        out, final = run(cell, x, lens, LSTMState(c, h))
        return out, final.c, final.h

    assert torch.autograd.gradcheck(fn, (x, *state))


def test_double_backward_raises_a_clear_error():
    cell = GRUCell(F, H, reset_after=False)
    x = torch.randn(B, T, F, requires_grad=True)
    y, _ = run_layer(cell, x, None, cell.initial_state(B))
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad((y * y).sum(), x, create_graph=True)
    (g,) = torch.autograd.grad((y * y).sum(), x)  # first order is fine
    assert g.shape == x.shape


# ------------------------------------------------------------ dispatch and constants


class MyLSTM(LSTMCell):
    """A user's subclass: its step may differ, so it gets the reference loop."""


@pytest.mark.parametrize(
    "cell, lengths, expected",
    [
        (LSTMCell(F, H), None, "fused"),
        (LSTMCell(F, H, forget_bias=1.0), None, "fused"),
        (LSTMCell(F, H, proj_size=2), None, "bptt"),
        (LSTMCell(F, H), LENGTHS, "bptt" if _ext.available() else "fused-segments"),
        (LSTMCell(F, H, peepholes=True), None, "bptt"),
        (LSTMCell(F, H, cell_clip=1.0), LENGTHS, "bptt"),
        (LSTMCell(F, H, proj_size=2, proj_clip=1.0), None, "bptt"),
        (GRUCell(F, H), None, "fused"),
        (GRUCell(F, H), LENGTHS, "fused-segments"),
        (GRUCell(F, H, reset_after=False), LENGTHS, "bptt"),
        (RNNCell(F, H, nonlinearity="relu"), None, "fused"),
        (MyLSTM(F, H), None, "loop"),
        (LSTMCell(F, H), [0] * B, "loop"),
    ],
)
def test_select_path(cell, lengths, expected):
    lens = None if lengths is None else torch.tensor(lengths)
    assert select_path(cell, torch.zeros(B, T, F), lens) == expected


def test_a_ragged_lstm_takes_the_segments_without_the_compiled_loop():
    with _ext.disabled():
        assert (
            select_path(LSTMCell(F, H), torch.zeros(B, T, F), torch.tensor(LENGTHS))
            == "fused-segments"
        )


def test_select_path_empty_batch_is_the_loop():
    assert select_path(LSTMCell(F, H), torch.zeros(0, T, F)) == "loop"
    assert select_path(LSTMCell(F, H), torch.zeros(B, 0, F)) == "loop"


def _fused_weights(cell, dtype=torch.float32):
    return cell.kernel_spec(dtype, torch.device("cpu")).fused_weights


def test_fused_weights_are_the_cells_own_parameters_and_constants_are_cached():
    cell = LSTMCell(F, H, forget_bias=1.0, proj_size=2)
    weights = _fused_weights(cell)
    assert [w is p for w, p in zip(weights, [cell.weight_ih, cell.weight_hh, cell.bias])] == [
        True
    ] * 3
    assert weights[4] is cell.weight_hr
    assert weights[3] is _fused_weights(cell)[3]
    assert not weights[3].requires_grad
    assert weights[3].tolist() == [0.0] * H + [1.0] * H + [0.0] * (2 * H)
    assert _fused_weights(cell, torch.float64)[3].dtype == torch.float64


@pytest.mark.parametrize(
    "cell, mode, bptt",
    [
        (LSTMCell(F, H), "lstm", "LSTMKernelArgs"),
        (LSTMCell(F, H, peepholes=True), None, "LSTMKernelArgs"),
        (GRUCell(F, H), "gru", None),
        (GRUCell(F, H, reset_after=False), None, "GRUKernelArgs"),
        (RNNCell(F, H), "rnn_tanh", None),
        (RNNCell(F, H, nonlinearity="relu"), "rnn_relu", None),
    ],
)
def test_kernel_spec_describes_the_cell(cell, mode, bptt):
    spec = cell.kernel_spec(torch.float32, torch.device("cpu"))
    assert spec.mode == mode and (spec.fused_weights is not None) == (mode is not None)
    assert (None if spec.bptt is None else type(spec.bptt()).__name__) == bptt


def test_the_effective_bias_holds_the_forget_bias():
    cell = LSTMCell(F, H, forget_bias=1.5, peepholes=True)
    args = cell.kernel_spec(torch.float32, torch.device("cpu")).bptt()
    torch.testing.assert_close(
        args.bias, cell.bias + torch.tensor([0.0, 1.5, 0.0, 0.0]).repeat_interleave(H)
    )
    assert args.bias.requires_grad and args.peepholes.shape == (3, H)
    assert LSTMCell(F, H).kernel_spec(torch.float32, torch.device("cpu")).bptt().bias is not None


class MyCell(RecurrentCell):
    """A user's own cell with no kernel spec: h' = tanh(x W + h)."""

    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.weight_ih = torch.nn.Parameter(torch.randn(hidden_size, input_size))

    def initial_state(self, batch_size, device=None, dtype=None):
        return torch.zeros(batch_size, self.hidden_size, device=device, dtype=dtype)

    def project_input(self, x):
        return x @ self.weight_ih.t()

    def step_projected(self, xw, state):
        h = torch.tanh(xw + state)
        return h, h


@pytest.mark.parametrize("lengths", LENS, ids=["full", "ragged"])
def test_a_users_cell_without_a_spec_takes_the_loop(lengths):
    cell = MyCell(F, H)
    assert cell.kernel_spec(torch.float32, torch.device("cpu")) is None
    lens = None if lengths is None else torch.tensor(lengths)
    x = torch.randn(B, T, F)
    assert select_path(cell, x, lens) == "loop"
    y, s = run_layer(cell, x, lens, cell.initial_state(B))
    y_ref, s_ref = run_loop(cell, x, lens, cell.initial_state(B))
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(s, s_ref)
    with pytest.raises(ValueError, match="fused kernel"):
        run_fused_full(cell, x, cell.initial_state(B), False)
    with pytest.raises(ValueError, match="expected an LSTMCell"):
        run_bptt_lstm(cell, x, lens, cell.initial_state(B))


@pytest.mark.parametrize(
    "kind, options",
    [
        ("lstm", {"forget_bias": 1.0}),
        ("lstm", {"forget_bias": 1.0, "peepholes": True, "cell_clip": 0.5}),
        ("lstm", {"proj_size": 5, "proj_clip": 0.4}),
        ("gru", {}),
        ("gru", {"reset_after": False}),
        ("rnn", {}),
        ("rnn", {"nonlinearity": "relu"}),
    ],
)
def test_export_first_leaves_no_fake_constant_behind(kind, options):
    """A first call under torch.export (fake tensors) must cache nothing a later eager call
    would receive."""
    torch.manual_seed(8)
    stack = StackedRNN(4, [8, 8], cell=kind, **options)
    x = torch.randn(2, 3, 4)
    torch.export.export(stack, (x,))
    torch.export.export(stack, (x, torch.tensor([3, 1])))
    y, state = stack(x)
    assert type(y) is torch.Tensor
    assert all(type(t) is torch.Tensor for t in torch.utils._pytree.tree_leaves(state))
    y_ref = x
    for cell in stack.layers:
        y_ref, _ = run_loop(cell, y_ref, None, cell.initial_state(2))
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)


def test_a_constant_made_under_a_fake_mode_is_not_kept():
    from torch._subclasses.fake_tensor import FakeTensorMode

    cell = RNNCell(F, H)
    with FakeTensorMode(allow_non_fake_inputs=True):
        cell.kernel_spec(torch.float32, torch.device("cpu"))
    zeros = cell.kernel_spec(torch.float32, torch.device("cpu")).fused_weights[3]
    assert type(zeros) is torch.Tensor and zeros.tolist() == [0.0] * H


def test_forget_bias_change_is_seen():
    cell = LSTMCell(F, H, forget_bias=1.0)
    x = torch.randn(B, T, F)
    run_layer(cell, x, None, cell.initial_state(B))
    cell.lstm_options = cell.lstm_options._replace(forget_bias=2.0)
    y, _ = run_layer(cell, x, None, cell.initial_state(B))
    torch.testing.assert_close(y, run_loop(cell, x, None, cell.initial_state(B))[0])


@pytest.mark.parametrize("lengths", [None, [9, 0, 4]], ids=["full", "ragged"])
@pytest.mark.parametrize(
    "name", ["lstm", "lstm-forget-bias", "lstm-peepholes", "gru", "gru-reset-before", "rnn-tanh"]
)
def test_inference_mode_then_training(name, lengths):
    """A first run under inference_mode (lengths made there too: no version counter) works
    and leaves no cached constant or layout that a later training run cannot use."""
    torch.manual_seed(6)
    cell = CELLS[name]()
    x = torch.randn(3, 9, F)  # a shape no other test caches a full-batch layout for
    with torch.inference_mode():
        lens = None if lengths is None else torch.tensor(lengths)
        y, _ = run_layer(cell, x, lens, cell.initial_state(3))
        y_ref, _ = run_loop(cell, x, lens, cell.initial_state(3))
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
    lens = None if lengths is None else torch.tensor(lengths)
    grads = []
    for fn in (run_layer, run_loop):
        y, _ = fn(cell, x, lens, cell.initial_state(3))
        grads.append(torch.autograd.grad(y.sum(), list(cell.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


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


# ------------------------------------------------------------ layout


def test_segment_bounds_are_actual_lengths():
    assert segment_bounds([5, 3, 3, 0], 8) == [0, 3, 5]
    bounds = segment_bounds(list(range(1, 101)), 8)
    assert len(bounds) <= 9 and bounds[0] == 0 and bounds[-1] == 100
    assert set(bounds[1:]) <= set(range(1, 101))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("max_segments", [None, 1, 2])
def test_layout_round_trip(reverse, max_segments):
    lens = torch.tensor(LENGTHS)
    layout = make_layout(lens, T, reverse, max_segments)
    x = torch.arange(1.0, B * T + 1).view(B, T, 1)
    flat = layout.gather_input(x)
    back = layout.scatter_output(torch.cat([flat, flat.new_zeros(1, 1)]))
    inside = (torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)).unsqueeze(-1)
    assert torch.equal(back, x * inside)
    assert layout.batch_sizes == tuple(int((lens > t).sum()) for t in range(max(LENGTHS)))


# ------------------------------------------------------------ through the stack


def test_bidirectional_stack_with_fast_paths_equals_the_loop(monkeypatch):
    torch.manual_seed(5)
    stack = StackedRNN(F, [H, 4], cell="lstm", bidirectional=True, forget_bias=1.0)
    x = torch.randn(B, T, F)
    lens = torch.tensor(LENGTHS)
    y, state = stack(x, lens)
    monkeypatch.setattr("rnnfuse.stack.run_layer", run_loop)
    y_ref, state_ref = stack(x, lens)
    torch.testing.assert_close(y, y_ref, atol=2e-5, rtol=2e-5)
    for a, b in zip(
        torch.utils._pytree.tree_leaves(state), torch.utils._pytree.tree_leaves(state_ref)
    ):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=2e-5)


# ------------------------------------------------------------ benchmark scripts


def test_benchmark_scripts_compile():
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        py_compile.compile(str(path), doraise=True)


def test_gpu_script_falls_back_cleanly():
    script = str(ROOT / "benchmarks" / "gpu.py")
    if not torch.cuda.is_available():
        done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "no CUDA device" in done.stdout
    cases = ["lstm-2x256", "peephole-lstm-2x256", "gru-reset-before-2x256", "ragged-lstm-2x256-b8"]
    done = subprocess.run(
        [sys.executable, script, "--device", "cpu", "--quick", "--repeats", "1", "--cases", *cases],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "| LSTM [256, 256] | nn.LSTM(num_layers=2) | fwd+bwd |" in done.stdout
    # each case's numbers checked against the float64 CPU path, and no weight copies seen
    assert done.stdout.count("numbers: ok") == 2 * len(cases)  # the live row and the final table
    assert "checks failed: none" in done.stdout
