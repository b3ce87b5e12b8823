"""torch.compile of the modules around the stacks: MultiEncoder, every fusion (functions and
modules), StateBridge and Seq2Seq (teacher forcing and generate).  Forward and backward equal
eager's, values and gradients, with ``fullgraph=True`` (no graph break anywhere on these paths).

Compiling is slow on a small machine: each test compiles one function that runs many cases.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from rnnfuse import (
    ChildSumFusion,
    GatedFusion,
    LSTMState,
    MultiEncoder,
    Seq2Seq,
    StackedRNN,
    StateBridge,
    ZophKnightFusion,
    concat_states,
    max_states,
    mean_states,
    sum_states,
)

pytestmark = pytest.mark.slow

BACKEND = "aot_eager"
"""Dynamo (fullgraph) and AOTAutograd's forward and backward graphs, without inductor's code
generation, which costs minutes here; inductor itself is tested on the stacks
(test_compile_export.py), where its lowering of PyTorch's fused kernels matters."""


def _weighted_sum(tensors):
    """A loss that weighs every element differently (a wrong gradient cannot cancel out)."""
    total = torch.zeros(())
    for k, t in enumerate(tensors):
        total = total + (t * torch.linspace(-1, 1 + k, t.numel()).view_as(t)).sum()
    return total


def _values_and_grads(fn, module, inputs):
    """``fn(*inputs)``'s outputs and the gradients of a weighted sum of them with respect
    to the inputs and ``module``'s parameters."""
    leaves = [t.detach().requires_grad_() if t.is_floating_point() else t for t in inputs]
    outputs = [t for t in tree_leaves(fn(*leaves)) if isinstance(t, torch.Tensor)]
    wrt = [t for t in leaves if t.requires_grad] + list(module.parameters())
    grads = torch.autograd.grad(_weighted_sum(outputs), wrt)
    return [t.detach() for t in outputs], list(grads)


def _assert_close(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _compare(fn, module, cases, **compile_options):
    compiled = torch.compile(fn, fullgraph=True, **compile_options)
    for inputs in cases:
        got = _values_and_grads(compiled, module, inputs)
        expected = _values_and_grads(fn, module, inputs)
        _assert_close(got[0], expected[0])
        _assert_close(got[1], expected[1])


class _AllFusions(nn.Module):
    """Every fusion on two LSTM-then-GRU sources (LSTM layer of 4, GRU layer of 3)."""

    def __init__(self) -> None:
        super().__init__()
        sizes = [LSTMState(4, 4), 3]
        self.bridge = StateBridge([LSTMState(8, 8), 6], [LSTMState(5, 5), 2], activation="tanh")
        self.zoph_knight = ZophKnightFusion(2, sizes)
        self.gated = GatedFusion(2, sizes)
        self.child_sum = ChildSumFusion(2, [LSTMState(4, 4)])

    def forward(self, c_a, h_a, g_a, c_b, h_b, g_b):
        a, b = (LSTMState(c_a, h_a), g_a), (LSTMState(c_b, h_b), g_b)
        return [
            concat_states([a, b]),
            sum_states([a, b]),
            mean_states([a, b]),
            max_states([a, b]),
            self.bridge([a, b]),
            self.zoph_knight([a, b]),
            self.gated([a, b]),
            self.child_sum([a[:1], b[:1]]),
        ]


def test_compile_every_fusion_forward_backward_equals_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    fusions = _AllFusions()
    cases = [[torch.randn(3, n) for n in (4, 4, 3, 4, 4, 3)] for _ in range(2)]
    _compare(fusions, fusions, cases, backend=BACKEND)


def _seq2seq() -> Seq2Seq:
    """A local and a global (bidirectional) LSTM encoder, concatenated, a bridge to the
    decoder's size, attention."""
    enc = MultiEncoder(
        {"local": StackedRNN(3, [4]), "global": StackedRNN(3, [2], bidirectional=True)}
    )
    return Seq2Seq(
        enc,
        StackedRNN(2, [5]),
        output_size=1,
        attention=True,
        attention_size=4,
        bridge=StateBridge([LSTMState(8, 8)], [LSTMState(5, 5)]),
    )


def _seq2seq_cases(batch_time_lengths):
    cases = []
    for batch, t_local, t_global, horizon, local, glob in batch_time_lengths:
        cases.append(
            [
                torch.randn(batch, t_local, 3),
                torch.randn(batch, t_global, 3),
                torch.tensor(local),
                torch.tensor(glob),
                torch.randn(batch, horizon, 1),
                torch.randn(batch, 1),
                torch.randn(batch, horizon, 1),
            ]
        )
    return cases


def test_compile_seq2seq_teacher_forcing_generate_and_encoders_equal_eager():
    """One compiled function: the MultiEncoder's outputs, fused state and joined outputs,
    teacher forcing and a 2-step rollout; ragged lengths (zero too), a second batch size."""
    torch._dynamo.reset()
    torch.manual_seed(1)
    model = _seq2seq()

    def run(x_local, x_global, len_local, len_global, targets, start, covariates):
        inputs = {"local": x_local, "global": x_global}
        lengths = {"local": len_local, "global": len_global}
        encoded = model.encoders(inputs, lengths)
        forced = model(inputs, targets, start=start, covariates=covariates, lengths=lengths)
        rolled = model.generate(
            inputs, start=start, steps=2, covariates=covariates, lengths=lengths
        )
        return encoded, forced, rolled

    cases = _seq2seq_cases(
        [  # equal T: the MultiEncoder's joined outputs exist
            (3, 5, 5, 3, [5, 2, 0], [4, 5, 1]),
            (3, 5, 5, 3, [1, 5, 3], [2, 0, 4]),
        ]
    )
    _compare(run, model, cases, backend=BACKEND)
