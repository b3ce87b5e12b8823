"""A stack whose every layer takes the padded path runs them in one call
(rnnfuse.kernels.padded_stack): the same values as layer by layer, bit for bit, with the C++
glue and with its Python fallback, and only where the layer-by-layer path would be padded."""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnfuse import StackedRNN
from rnnfuse.kernels import _ext, padded_stack, run_layer, run_loop
from rnnfuse.kernels.ragged import SMALL_BATCH, SMALL_BATCH_ONE_THREAD
from rnnfuse.state import LSTMState

F = 5
SIZES = [7, 6, 4]


def _layer_by_layer(stack, x, lengths, states):
    """The stack's layers through run_layer (each padded), as forward ran them before."""
    out, finals = x, []
    for cell, state in zip(stack.layers, states):
        out, final = run_layer(cell, out, lengths, state)
        finals.append(final)
    return out, finals


def _reference(stack, x, lengths, states):
    out, finals = x, []
    for cell, state in zip(stack.layers, states):
        out, final = run_loop(cell, out, lengths, state, False)
        finals.append(final)
    return out, finals


@pytest.fixture
def counted(monkeypatch):
    """How many forwards ran the stack in one call."""
    calls = []
    real = padded_stack.run_padded_stack

    def spy(*args):
        result = real(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr("rnnfuse.kernels.run_padded_stack", spy)
    return calls


def _states(stack, batch, dtype, gen):
    return tuple(
        LSTMState(*(0.5 * torch.randn(batch, n, generator=gen, dtype=dtype) for _ in range(2)))
        for n in SIZES
    )


@pytest.mark.slow
@pytest.mark.parametrize("calls", ["one", "cut"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize(
    ("lengths", "steps"),
    [
        ([9, 0, 3, 7, 1], 9),  # an empty sequence; the longest runs to the end
        ([4, 2, 5, 5, 1], 9),  # trimmed to the longest, padded back
        ([8, 3, 6, 1, 2], 9),  # the longest one short of the end
    ],
)
@pytest.mark.parametrize("given_state", [False, True], ids=["zero-state", "given-state"])
def test_one_call_equals_layer_by_layer(
    lengths, steps, dtype, given_state, calls, bptt_impl, two_threads, counted, monkeypatch
):
    """The stack in one call gives the layer-by-layer values bit for bit when each layer
    makes one fused call (these few steps), and to rounding when its calls are cut at the
    lengths (a free call: cuts at every length up to MAX_CALLS; fewer rows change how the
    kernel sums)."""
    if calls == "cut":
        monkeypatch.setattr(padded_stack, "CALL_COST", 0.0)
        assert len(padded_stack.cut_points(lengths, max(lengths), 0.0)) > 2
    gen = torch.Generator().manual_seed(3)
    stack = StackedRNN(F, SIZES, cell="lstm", forget_bias=1.0).to(dtype).eval()
    x = torch.randn(len(lengths), steps, F, generator=gen, dtype=dtype)
    lens = torch.tensor(lengths)
    past = torch.arange(steps).unsqueeze(0) >= lens.unsqueeze(1)
    x[past] = float("nan")  # the padding reaches no product
    states = _states(stack, len(lengths), dtype, gen) if given_state else None
    with torch.no_grad():
        y, finals = stack(x, lens, states)
        start = states if given_state else stack.initial_state(len(lengths), dtype=dtype)
        y_layers, finals_layers = _layer_by_layer(stack, x, lens, start)
        y_ref, finals_ref = _reference(stack, x.masked_fill(past.unsqueeze(2), 0.0), lens, start)
    assert counted == [True]
    assert isinstance(finals, tuple) and all(isinstance(s, LSTMState) for s in finals)
    exact = 0 if calls == "one" else (1e-12 if dtype == torch.float64 else 1e-6)
    torch.testing.assert_close(y, y_layers, atol=exact, rtol=exact)
    for got, want in zip(finals, finals_layers):
        torch.testing.assert_close(got.c, want.c, atol=exact, rtol=exact)
        torch.testing.assert_close(got.h, want.h, atol=exact, rtol=exact)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(y, y_ref, atol=tol, rtol=tol)
    assert (y[past] == 0).all()
    for got, want in zip(finals, finals_ref):
        torch.testing.assert_close(got.c, want.c, atol=tol, rtol=tol)
        torch.testing.assert_close(got.h, want.h, atol=tol, rtol=tol)


@pytest.mark.parametrize(
    ("lengths", "steps", "call_cost", "expected"),
    [
        ([57, 99, 4, 70, 65, 57, 81, 36], 99, padded_stack.CALL_COST, [0, 70, 99]),
        (
            [100] + [10] * 7,
            100,
            padded_stack.CALL_COST,
            [0, 10, 100],
        ),  # one long sequence runs on alone
        (
            [99, 95, 90, 88, 80, 99, 97, 92],
            99,
            padded_stack.CALL_COST,
            [0, 99],
        ),  # cuts would save less than a call
        ([9, 0, 3, 7, 1], 9, 0.0, [0, 1, 3, 7, 9]),  # free calls: at most MAX_CALLS
        ([5, 5, 5], 5, 0.0, [0, 5]),
    ],
)
def test_cut_points_minimise_the_modelled_cost(lengths, steps, call_cost, expected):
    """The cuts against every choice of at most MAX_CALLS - 1 inner bounds at lengths."""
    bounds = padded_stack.cut_points(lengths, steps, call_cost)
    assert bounds == expected

    def cost(b):
        rows = [len(lengths)] + [sum(n > p for n in lengths) for p in b[1:-1]]
        return sum(
            (q - p) * (padded_stack.STEP_COST + r) + call_cost for p, q, r in zip(b, b[1:], rows)
        )

    inner = sorted({n for n in lengths if 0 < n < steps})
    every = [
        [0, *c, steps]
        for k in range(padded_stack.MAX_CALLS)
        for c in itertools.combinations(inner, k)
    ]
    assert cost(bounds) == min(cost(b) for b in every)


def test_time_major_stacks_run_in_one_call(two_threads, counted):
    stack = StackedRNN(F, SIZES, batch_first=False).eval()
    x = torch.randn(9, 4, F)
    lens = torch.tensor([9, 2, 0, 5])
    with torch.no_grad():
        y, finals = stack(x, lens)
        y_bf, finals_bf = _layer_by_layer(stack, x.transpose(0, 1), lens, stack.initial_state(4))
    assert counted == [True]
    torch.testing.assert_close(y, y_bf.transpose(0, 1), atol=0, rtol=0)
    torch.testing.assert_close(finals[-1].h, finals_bf[-1].h, atol=0, rtol=0)


def test_every_length_zero_runs_layer_by_layer(two_threads, counted):
    stack = StackedRNN(F, SIZES).eval()
    state = _states(stack, 3, torch.float32, torch.Generator().manual_seed(1))
    with torch.no_grad():
        y, finals = stack(torch.randn(3, 4, F), torch.zeros(3, dtype=torch.int64), state)
    assert counted == [False]
    assert (y == 0).all()
    for got, given in zip(finals, state):
        assert got.c is given.c or torch.equal(got.c, given.c)


@pytest.mark.parametrize(
    "case",
    [
        "gradient",
        "state-gradient",
        "one-thread-larger-batch",
        "large-batch",
        "gru",
        "peepholes",
        "bidirectional",
        "residual",
        "dropout-training",
        "no-lengths",
    ],
)
def test_other_stacks_and_batches_run_layer_by_layer(case, two_threads, counted):
    """The one call is taken only where every layer would run padded, each output feeding
    the next as it is; elsewhere the layers run as before (and give their usual values)."""
    options = {
        "gru": {"cell": "gru"},
        "peepholes": {"peepholes": True},
        "bidirectional": {"bidirectional": True},
        "residual": {"residual": True},
        "dropout-training": {"dropout": 0.5},
    }.get(case, {})
    sizes = [6, 6] if case == "residual" else SIZES
    stack = StackedRNN(F, sizes, **options)
    stack.train(case == "dropout-training")
    batch = {
        "large-batch": SMALL_BATCH + 1,
        "one-thread-larger-batch": SMALL_BATCH_ONE_THREAD + 1,
    }.get(case, 4)
    x = torch.randn(batch, 8, F, requires_grad=case == "gradient")
    lens = None if case == "no-lengths" else torch.arange(batch) % 9
    state = None
    if case == "state-gradient":  # frozen weights, a state that needs gradients
        stack.requires_grad_(False)
        state = tuple(
            LSTMState(torch.zeros(batch, n, requires_grad=True), torch.zeros(batch, n))
            for n in sizes
        )
    if case == "one-thread-larger-batch":
        torch.set_num_threads(1)
    grad = case in ("gradient", "state-gradient")
    with torch.set_grad_enabled(grad):
        y, _ = stack(x, lens, state)
    if case == "state-gradient":  # the layers would run padded, but autograd must record them
        assert counted == [False] and y.requires_grad
    else:
        assert not any(counted)


def test_modified_lengths_and_weights_are_seen(two_threads, counted):
    """Plans are kept by the lengths' values and weights by their version: a tensor of
    lengths changed in place, or weights changed in place, give the new values."""
    stack = StackedRNN(F, SIZES).eval()
    x = torch.randn(4, 9, F)
    lens = torch.tensor([9, 2, 0, 5])
    with torch.no_grad():
        stack(x, lens)
        lens[1] = 7
        y, _ = stack(x, lens)
        y_new, _ = _layer_by_layer(stack, x, torch.tensor([9, 7, 0, 5]), stack.initial_state(4))
        torch.testing.assert_close(y, y_new, atol=0, rtol=0)
        stack.layers[0].weight_hh.mul_(0.5)
        y, _ = stack(x, lens)
        y_new, _ = _layer_by_layer(stack, x, lens, stack.initial_state(4))
    torch.testing.assert_close(y, y_new, atol=0, rtol=0)
    assert counted == [True, True, True]


@pytest.mark.parametrize("batch", [4, SMALL_BATCH + 1], ids=["padded", "layout"])
def test_lengths_changed_behind_the_version_counter_are_read_anew(batch, two_threads):
    """A lengths tensor sharing a NumPy array's memory: changing the array changes no version
    counter, yet the next forward must see the new lengths (nothing read from the lengths is
    kept by the tensor's identity from one forward to the next)."""
    import numpy as np

    stack = StackedRNN(F, SIZES).eval()
    x = torch.randn(batch, 9, F)
    array = np.arange(batch) % 9 + 1
    lens = torch.from_numpy(array)
    with torch.no_grad():
        stack(x, lens)
        array[:] = 9 - np.arange(batch) % 9
        y, finals = stack(x, lens)
        y_new, finals_new = stack(x, torch.tensor(array))
    torch.testing.assert_close(y, y_new, atol=0, rtol=0)
    torch.testing.assert_close(finals[-1].c, finals_new[-1].c, atol=0, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize(("hidden", "calls"), [(256, 4), (8, 2)])
def test_wide_layers_cut_where_one_sequence_runs_on_and_narrow_ones_do_not(
    hidden, calls, two_threads, monkeypatch
):
    """One of 8 sequences runs 90 steps past the others: two calls per layer for layers of
    256 units (the 90 steps at one row save more than a call costs), one for layers of 8
    (their rows cost so little that a call's own cost outweighs the saving: ROW_WORK)."""
    made = []
    real = padded_stack._VF

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def lstm(*args):
            made.append(args[0].shape[:2])
            return real.lstm(*args)

    monkeypatch.setattr(padded_stack, "_VF", Counting())
    stack = StackedRNN(F, [hidden, hidden]).eval()
    x = torch.randn(8, 100, F)
    lens = torch.tensor([100] + [10] * 7)
    with torch.no_grad(), _ext.disabled():
        y, _ = stack(x, lens)
        y_layers, _ = _layer_by_layer(stack, x, lens, stack.initial_state(8))
    assert len(made) == calls
    if calls == 4:
        assert made[1] == (90, 1)  # the second call: 90 steps of the one long sequence
    torch.testing.assert_close(y, y_layers, atol=1e-6, rtol=1e-6)
