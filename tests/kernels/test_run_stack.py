"""kernels.run_stack: the one place (kernels/dispatch.py) that chooses how a plain stack's
layers run, asked by StackedRNN.forward; the same kernels as before, bit for bit."""

from __future__ import annotations

import pytest
import torch

from rnnfuse import StackedRNN
from rnnfuse.kernels import run_layer, run_stack, select_stack_path
from rnnfuse.kernels.dispatch import padded_stack_specs
from rnnfuse.kernels.padded_stack import run_padded_stack
from rnnfuse.state import flatten_state

F, T = 5, 9
LENGTHS = [9, 0, 3, 7]  # four sequences: the padded path at any thread count


def _stack(cell: str = "lstm", **options) -> StackedRNN:
    torch.manual_seed(0)
    return StackedRNN(F, [6, 4], cell, **options).eval()


def _inputs(batch: int = len(LENGTHS)):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, T, F, generator=gen), torch.tensor(LENGTHS * (batch // 4))


def _layer_by_layer(stack, x, lengths):
    out, finals = x, []
    for cell in stack.layers:
        out, final = run_layer(cell, out, lengths, cell.initial_state(x.shape[0]))
        finals.append(final)
    return out, tuple(finals)


def _same(a, b) -> bool:
    return all(torch.equal(p, q) for p, q in zip(flatten_state(a), flatten_state(b), strict=True))


def test_the_path_follows_the_layers_and_the_data():
    stack, (x, lengths) = _stack(), _inputs()
    with torch.no_grad():
        assert select_stack_path(stack.layers, x, lengths) == "fused-padded-stack"
        assert select_stack_path(stack.layers, x, None) == "layers"  # full: one fused call each
        assert select_stack_path(_stack("gru").layers, x, lengths) == "layers"
        big_x, big_lengths = _inputs(64)
        assert select_stack_path(stack.layers, big_x, big_lengths) == "layers"
    assert select_stack_path(stack.layers, x, lengths) == "layers"  # gradients: layer by layer


def test_one_call_is_the_padded_stack_kernel_bit_for_bit():
    stack, (x, lengths) = _stack(), _inputs()
    with torch.no_grad():
        specs = padded_stack_specs(stack.layers, x, lengths)
        assert specs is not None
        direct = run_padded_stack(specs, x, lengths, None)
        assert direct is not None
        out, finals = run_stack(stack.layers, x, lengths)
        assert type(finals) is tuple and len(finals) == 2
        assert torch.equal(out, direct[0]) and _same(finals, tuple(direct[1]))
        again = stack(x, lengths)
    assert torch.equal(again[0], out) and _same(again[1], finals)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("ragged", [False, True])
def test_the_layers_path_is_run_layer_per_layer_bit_for_bit(cell, ragged):
    stack, (x, lengths) = _stack(cell), _inputs()
    lengths = lengths if ragged else None
    want = _layer_by_layer(stack, x, lengths)  # with gradients: never the one call
    got = run_stack(stack.layers, x, lengths)
    assert torch.equal(got[0], want[0]) and _same(got[1], want[1])
    from_stack = stack(x, lengths)
    assert torch.equal(from_stack[0], want[0]) and _same(from_stack[1], want[1])


def test_a_nan_falls_back_to_the_layers():
    """Where the one call cannot hold the states exactly, the layers run one by one."""
    stack, (x, lengths) = _stack(), _inputs()
    x[0, 2, 1] = float("nan")
    with torch.no_grad():
        assert select_stack_path(stack.layers, x, lengths) == "fused-padded-stack"
        specs = padded_stack_specs(stack.layers, x, lengths)
        assert run_padded_stack(specs, x, lengths, None) is None
        got = run_stack(stack.layers, x, lengths)
        want = _layer_by_layer(stack, x, lengths)
    assert torch.allclose(got[0], want[0], equal_nan=True, atol=0, rtol=0)
    assert all(
        torch.allclose(p, q, equal_nan=True, atol=0, rtol=0)
        for p, q in zip(flatten_state(got[1]), flatten_state(want[1]), strict=True)
    )


@pytest.mark.parametrize(
    "options, asks",
    [
        ({}, True),
        ({"dropout": 0.5}, True),  # in eval mode no dropout is at work
        ({"bidirectional": [True, False]}, False),
        ({"residual": [False, True]}, False),
    ],
)
def test_the_stack_asks_run_stack_where_its_layers_chain_plainly(options, asks, monkeypatch):
    calls = []

    def spy(*args):
        calls.append(args)
        return run_stack(*args)

    monkeypatch.setattr("rnnfuse.stack.run_stack", spy)
    stack = StackedRNN(F, [4, 4], "lstm", **options).eval()
    x, lengths = _inputs()
    stack(x, lengths)
    assert bool(calls) is asks
    if asks:
        cells, _, given_lengths, start = calls[0]
        assert list(cells) == list(stack.layers) and start is None
        assert torch.equal(given_lengths, lengths)
    calls.clear()
    stack.train()(x, lengths)
    assert bool(calls) is (asks and not options.get("dropout"))
