"""The fused paths against the reference loop: whole sequences (run_fused_full), ragged
batches in segments (run_fused_segments) and packed (run_fused_packed), and finite
differences through the ragged ones."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import DTYPES, FUSED, LENGTHS, F, assert_matches_loop

from rnnfuse.cells import LSTMCell
from rnnfuse.kernels.fused import run_fused_full
from rnnfuse.kernels.padded import run_fused_padded
from rnnfuse.kernels.ragged import (
    run_fused_packed,
    run_fused_segments,
)
from rnnfuse.state import LSTMState


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
