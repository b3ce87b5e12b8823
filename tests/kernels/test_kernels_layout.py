"""rnnfuse.kernels.layout: segment bounds and the packed layout's gather/scatter."""

from __future__ import annotations

import pytest
import torch
from kernel_cases import LENGTHS, B, T

from rnnfuse.kernels.layout import make_layout, segment_bounds


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
