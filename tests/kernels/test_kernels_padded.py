"""The padded path (run_fused_padded): one fused call over the padding, against the
reference loop; what it holds and refuses, weights changed in place, no reference
kept, chained layers, and the small inference batches it serves."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import (
    CELLS,
    DTYPES,
    LENGTHS,
    B,
    F,
    H,
    T,
    _leaves,
    _random_state,
    _run,
    assert_matches_loop,
)

from rnnfuse import StackedRNN
from rnnfuse.cells import LSTMCell, RNNCell
from rnnfuse.kernels import run_layer, run_loop, select_path
from rnnfuse.kernels.padded import SATURATE, padded_runs, run_fused_padded
from rnnfuse.kernels.ragged import (
    SMALL_BATCH,
    SMALL_BATCH_ONE_THREAD,
)

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
    spec = lambda: cell.kernel_spec(torch.float64, torch.device("cpu"))
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
