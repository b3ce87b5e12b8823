"""Every path sees the weights and the lengths as they are now, and runs under autograd,
``no_grad`` and ``inference_mode``.

Writes that no version counter sees (through ``.data``, into a NumPy view) are as legal as
an optimizer step, ``copy_``, ``set_`` or ``load_state_dict``: a second call after any of
them must give the reference loop's numbers for the new weights, on every path (no path
may keep something made from the old weights).  The same for lengths: a layout made from
them is kept for the next layer, keyed on their values, so lengths written behind the version
counter, or a new lengths tensor at a freed one's address, are run as they are now.  Stacks
whose layers chain on the padded path, and stacks that run layer by layer, must work under
``inference_mode`` (inference tensors have no version counter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import torch
from kernel_paths import PATHS, assert_same, leaves, path_runs

from rnnfuse import StackedRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.kernels import _ext, run_loop, select_path
from rnnfuse.kernels.dispatch import padded_stack_specs
from rnnfuse.kernels.padded import SATURATE

B, T, F, H = 5, 6, 3, 4
LENGTHS = [6, 0, 3, 5, 1]
TOL = 1e-10  # float64 throughout


def _data_mul(cell, other) -> None:
    cell.weight_ih.data.mul_(2.0)


def _data_copy(cell, other) -> None:
    cell.weight_ih.data.copy_(other.weight_ih.data)
    cell.weight_hh.data.copy_(other.weight_hh.data)


def _data_assign(cell, other) -> None:
    cell.weight_ih.data = other.weight_ih.data.clone()


def _numpy_view(cell, other) -> None:
    cell.weight_ih.detach().numpy()[:] *= -1.5


def _set(cell, other) -> None:
    with torch.no_grad():
        cell.weight_ih.set_(other.weight_ih.detach().clone())


def _optimizer_step(cell, other) -> None:
    optimizer = torch.optim.SGD(cell.parameters(), lr=0.5)
    x = torch.randn(B, T, cell.input_size, dtype=torch.float64)
    y, _ = run_loop(cell, x, torch.tensor(LENGTHS), cell.initial_state(B, dtype=torch.float64))
    y.square().sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def _load_state_dict(cell, other) -> None:
    cell.load_state_dict(other.state_dict())


def _recurrent_sums_too_large(cell, other) -> None:
    cell.weight_hh.data.fill_(SATURATE)  # the padded path cannot hold this LSTM any more


WRITES: dict[str, Callable] = {
    "data-mul": _data_mul,
    "data-copy": _data_copy,
    "data-assign": _data_assign,
    "numpy-view": _numpy_view,
    "set": _set,
    "optimizer-step": _optimizer_step,
    "load_state_dict": _load_state_dict,
    "sums-too-large": _recurrent_sums_too_large,
}

CELLS = {
    "lstm": lambda: LSTMCell(F, H, forget_bias=1.0),
    "gru": lambda: GRUCell(F, H),
    "rnn": lambda: RNNCell(F, H),
}
PATH_NAMES = [
    "fused",
    "fused-segments",
    "fused-padded",
    "bptt-compiled",
    "bptt-fallback",
    "run_layer",
    "op",
]


def _cases() -> list[tuple[str, str]]:
    return [
        (p, n) for p in PATH_NAMES for n in CELLS if path_runs(p, CELLS[n]().double(), p != "fused")
    ]


@pytest.mark.parametrize("mode", ["no_grad", "grad"])
@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize(("path", "name"), _cases())
def test_a_weight_written_between_two_calls_is_seen(path, name, write, mode):
    torch.manual_seed(1)
    cell, other = CELLS[name]().double(), CELLS[name]().double()
    lens = None if path == "fused" else torch.tensor(LENGTHS)
    x = torch.randn(B, T, F, dtype=torch.float64)
    state = cell.initial_state(B, dtype=torch.float64)
    context = torch.no_grad if mode == "no_grad" else contextlib.nullcontext
    if write == "sums-too-large" and path == "fused-padded":
        pytest.skip("the padded path refuses such weights (test_kernels checks the error)")
    with context():
        PATHS[path](cell, x, lens, state, False)
    WRITES[write](cell, other)
    with context():
        y, final = PATHS[path](cell, x, lens, state, False)
    with torch.no_grad():
        y_ref, final_ref = run_loop(cell, x, lens, state)
    assert_same([y, *leaves(final)], [y_ref, *leaves(final_ref)], TOL, f"{path} after {write}")


@pytest.mark.parametrize("write", list(WRITES))
def test_a_padded_stack_sees_a_weight_written_between_two_calls(write):
    """The stack in one padded call (no gradient, small ragged LSTM batch) after a write to
    its second layer's weights: the numbers of the layers run by the loop."""
    torch.manual_seed(2)
    stack = StackedRNN(F, [H, H], cell="lstm").double().eval()
    other = LSTMCell(H, H).double()
    lens, x = torch.tensor(LENGTHS), torch.randn(B, T, F, dtype=torch.float64)
    with torch.no_grad():
        assert padded_stack_specs(stack.layers, x, lens) is not None
        stack(x, lens)
    WRITES[write](stack.layers[1], other)
    with torch.no_grad():
        y, state = stack(x, lens)
        layer_in, expected = x, []
        for cell in stack.layers:
            layer_in, final = run_loop(
                cell, layer_in, lens, cell.initial_state(B, dtype=torch.float64)
            )
            expected += leaves(final)
    assert_same(
        [y, *[t for s in state for t in leaves(s)]],
        [layer_in, *expected],
        TOL,
        f"padded stack after {write}",
    )


def _mixed_directions() -> StackedRNN:
    return StackedRNN(F, [H, H, H], cell="lstm", bidirectional=[True, False, False])


def _projection_first() -> StackedRNN:
    return StackedRNN.from_cells([LSTMCell(F, H, proj_size=2), LSTMCell(2, H), LSTMCell(H, H)])


def _residual() -> StackedRNN:
    return StackedRNN(F, [F, F, F], cell="lstm", residual=[True, True, True])


def _plain() -> StackedRNN:
    return StackedRNN(F, [H, H, H], cell="lstm")


def _gru() -> StackedRNN:
    return StackedRNN(F, [H, H], cell="gru", bidirectional=True)


STACKS = {
    "mixed-directions": _mixed_directions,
    "projection-first": _projection_first,
    "residual": _residual,
    "plain": _plain,
    "gru": _gru,
}


@pytest.mark.parametrize("extension", [True, False], ids=["extension", "no-extension"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("where", ["outside", "inside"])
@pytest.mark.parametrize("stack_name", list(STACKS))
def test_stacks_run_under_inference_mode(stack_name, where, threads, extension):
    """Under ``inference_mode`` (the input and lengths made outside it or inside it, as
    inference tensors), every stack gives the numbers it gives under ``no_grad`` and with
    autograd, layer by layer or in one padded call."""
    if extension and not _ext.available():
        pytest.skip("the C++ extension is not built here")
    torch.manual_seed(3)
    stack = STACKS[stack_name]().double().eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with contextlib.nullcontext() if extension else _ext.disabled():
            x, lens = torch.randn(B, T, F, dtype=torch.float64), torch.tensor(LENGTHS)
            with torch.no_grad():
                y_ref, s_ref = stack(x, lens)
            y_grad, s_grad = stack(x.requires_grad_(), lens)
            x = x.detach()
            with torch.inference_mode():
                if where == "inside":
                    x, lens = x.clone(), lens.clone()
                y, state = stack(x, lens)
                y2, _ = stack(
                    y[..., :F] if stack_name == "residual" else x, lens
                )  # inference tensors chained in
    finally:
        torch.set_num_threads(previous)
    flat = torch.utils._pytree.tree_leaves
    assert_same([y, *flat(state)], [y_ref, *flat(s_ref)], TOL, "inference_mode vs no_grad")
    assert_same(
        [y, *flat(state)],
        [y_grad.detach(), *[t.detach() for t in flat(s_grad)]],
        TOL,
        "inference_mode vs autograd",
    )
    assert y2.shape == y.shape


@pytest.mark.parametrize(
    "path", ["fused-padded", "fused-segments", "bptt-compiled", "bptt-fallback", "run_layer"]
)
def test_a_padded_output_made_under_inference_mode_feeds_every_path(path, two_threads):
    """A padded layer's output made under ``inference_mode`` (an inference tensor) is the
    next layer's input on any path, inside inference_mode."""
    torch.manual_seed(4)
    first, second = LSTMCell(F, H).double(), LSTMCell(H, H).double()
    if not path_runs(path, second, True):
        pytest.skip("the C++ extension is not built here")
    lens = torch.tensor(LENGTHS)
    x = torch.randn(B, T, F, dtype=torch.float64)
    with torch.inference_mode():
        assert select_path(first, x, lens) == "fused-padded"
        out, _ = PATHS["fused-padded"](
            first, x, lens, first.initial_state(B, dtype=torch.float64), False
        )
        y, final = PATHS[path](
            second, out, lens, second.initial_state(B, dtype=torch.float64), False
        )
    with torch.no_grad():
        out_ref, _ = run_loop(first, x, lens, first.initial_state(B, dtype=torch.float64))
        y_ref, final_ref = run_loop(
            second, out_ref, lens, second.initial_state(B, dtype=torch.float64)
        )
    assert_same([y, *leaves(final)], [y_ref, *leaves(final_ref)], TOL, path)


def test_padded_calls_from_several_threads_at_once():
    """The padded path reuses memory for its indicator weights per thread: calls of one
    model from several Python threads at once give each call's own numbers."""
    import threading

    torch.manual_seed(5)
    stack = StackedRNN(F, [H, H], cell="lstm").double().eval()
    inputs = [torch.randn(B, T, F, dtype=torch.float64) for _ in range(4)]
    lens = torch.tensor(LENGTHS)
    with torch.no_grad():
        expected = [stack(x, lens)[0] for x in inputs]
    results: dict[int, torch.Tensor] = {}

    def work(k: int) -> None:
        with torch.no_grad():
            for _ in range(20):
                results[k] = stack(inputs[k], lens)[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        torch.testing.assert_close(results[k], expected[k], atol=0, rtol=0)


# ------------------------------------------------------------ lengths written between two calls

NEW_LENGTHS = [2, 6, 0, 1, 5]  # another sort order and other segments than LENGTHS


def _lengths_data_copy(lens: torch.Tensor) -> None:
    lens.data.copy_(torch.tensor(NEW_LENGTHS))


def _lengths_data_index(lens: torch.Tensor) -> None:
    lens.data[:] = torch.tensor(NEW_LENGTHS)


def _lengths_data_assign(lens: torch.Tensor) -> None:
    lens.data = torch.tensor(NEW_LENGTHS)


def _lengths_numpy_view(lens: torch.Tensor) -> None:
    lens.numpy()[:] = NEW_LENGTHS


def _lengths_in_place(lens: torch.Tensor) -> None:
    lens.copy_(torch.tensor(NEW_LENGTHS))  # seen by the version counter


LENGTH_WRITES: dict[str, Callable] = {
    "data-copy": _lengths_data_copy,
    "data-index": _lengths_data_index,
    "data-assign": _lengths_data_assign,
    "numpy-view": _lengths_numpy_view,
    "in-place": _lengths_in_place,
}
LAYOUT_PATHS = [
    "fused-segments",
    "bptt-compiled",
    "bptt-fallback",
    "run_layer",
    "run_layer-no-extension",
    "op",
]


def _at_address(address: int, source: torch.Tensor) -> torch.Tensor:
    """A copy of ``source`` whose Python object sits where a freed tensor sat."""
    kept = []
    for _ in range(1000):
        lens = source.clone()
        if id(lens) == address:
            return lens
        kept.append(lens)  # keep the address taken, so that the next tensor gets another one
    pytest.skip("no new tensor took the freed one's address")


def _layout_cases() -> list[tuple[str, str]]:
    return [(n, p) for p in LAYOUT_PATHS for n in CELLS if path_runs(p, CELLS[n]().double(), True)]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("write", [*LENGTH_WRITES, "freed-and-reallocated"])
@pytest.mark.parametrize(("name", "path"), _layout_cases())
def test_lengths_written_between_two_calls_are_seen(name, path, write, reverse):
    """Lengths changed behind the version counter (``.data``, a NumPy view), or a new lengths
    tensor at a freed one's address: the second call runs the new lengths, on every path that
    keeps a layout made from lengths (never a layout of the old ones)."""
    torch.manual_seed(6)
    cell = CELLS[name]().double()
    x = torch.randn(B, T, F, dtype=torch.float64)
    state = cell.initial_state(B, dtype=torch.float64)
    lens = torch.tensor(LENGTHS)
    with torch.no_grad():
        PATHS[path](cell, x, lens, state, reverse)
        if write == "freed-and-reallocated":
            source, address = torch.tensor(NEW_LENGTHS), id(lens)
            del lens
            lens = _at_address(address, source)
        else:
            LENGTH_WRITES[write](lens)
        assert lens.tolist() == NEW_LENGTHS
        y, final = PATHS[path](cell, x, lens, state, reverse)
        y_ref, final_ref = run_loop(cell, x, torch.tensor(NEW_LENGTHS), state, reverse)
    assert_same(
        [y, *leaves(final)], [y_ref, *leaves(final_ref)], TOL, f"{path} after lengths {write}"
    )


def test_lengths_of_the_same_bytes_in_another_dtype_get_their_own_layout():
    """int32 [1, 0, 2, 0] and int64 [1, 2] are the same bytes: the layouts kept for them differ."""
    from rnnfuse.kernels.layout import layout_for

    four = layout_for(torch.tensor([1, 0, 2, 0], dtype=torch.int32), 2, False, None, 4)
    two = layout_for(torch.tensor([1, 2]), 2, False, None, 2)
    assert (four.batch, four.lengths) == (4, (2, 1, 0, 0))
    assert (two.batch, two.lengths) == (2, (2, 1))
