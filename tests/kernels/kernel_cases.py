"""The fast paths of rnnfuse.kernels against the reference loop (run_loop).

Every path must give the loop's outputs, final states and gradients (of the input, the
initial state and every parameter), for every cell kind and option, full or ragged
(unsorted lengths including 0 and the full length), forwards and reversed, in float32 and
float64.  The hand-written backward passes are also checked by finite differences
(gradcheck, float64).

Shared by the ``test_kernels_*.py`` files of this folder (one per path: dispatch, fused,
padded, BPTT, layout): the cells, sizes and lengths every path runs, and
:func:`assert_matches_loop`.  The helpers keep the names they had in the one file these tests were split from.
"""

from __future__ import annotations

import torch

from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.kernels import run_loop
from rnnfuse.state import LSTMState

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
