"""The benchmark cases: what is compared with what, and the speed goals (a bar to meet, a
goal to reach).

Each case times a *candidate* against a *baseline* side by side (see ``harness.compare``)
in one or both modes, ``fwd`` (inference: ``eval``, ``no_grad``) and ``fwd+bwd``
(training: gradients of every parameter and of the input).  A ratio below 1 means the
candidate is faster.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor
from workloads import (
    Size,
    Workload,
    lstmcell_loop,
    rnnfuse_loop,
    rnnfuse_stack,
    torch_packed,
    torch_stack,
)

__all__ = ["Case", "CASES", "MEMORY_CASES", "case_by_name"]

Builder = Callable[[Tensor, Tensor, Size], Workload]
MODES = ("fwd", "fwd+bwd")


@dataclass(frozen=True)
class Case:
    """One comparison; ``bars``/``goals`` map a mode to the ratio the candidate must reach."""

    name: str
    title: str
    candidate_name: str
    baseline_name: str
    kind: str
    sizes: list[int]
    candidate: Builder
    baseline: Builder
    bars: dict[str, float] = field(default_factory=dict)
    goals: dict[str, float] = field(default_factory=dict)
    ragged: bool = False  # the candidate runs the ragged batch (its useful tokens are fewer)
    modes: tuple[str, ...] = MODES
    batch: int | None = None  # a batch size of its own (else the run's)
    proj: int | None = None  # LSTM projection size (for the FLOP count)


def _stack(sizes: list[int], cell: str, ragged: bool = False, **opts: object) -> Builder:
    return lambda x, lens, size: rnnfuse_stack(
        x, size.hidden(sizes), cell, lens if ragged else None, **opts
    )


def _torch(sizes: list[int], kind: str) -> Builder:
    return lambda x, lens, size: torch_stack(x, size.hidden(sizes), kind)


def _proj_size(size: Size) -> int:
    return max(2, PROJ // size.shrink)


def _clipped_stack(sizes: list[int]) -> Builder:
    """An LSTM stack with a projection and both clips (the BPTT kernel)."""
    return lambda x, lens, size: rnnfuse_stack(
        x,
        size.hidden(sizes),
        "lstm",
        None,
        proj_size=_proj_size(size),
        cell_clip=3.0,
        proj_clip=3.0,
    )


def _torch_proj(sizes: list[int]) -> Builder:
    return lambda x, lens, size: torch_stack(
        x, size.hidden(sizes), "lstm", proj_size=_proj_size(size)
    )


L2 = [256, 256]
L3 = [512, 256, 128]
PROJ = 128

CASES: list[Case] = [
    Case(
        "lstm-2x256",
        "LSTM [256, 256]",
        "rnnfuse",
        "nn.LSTM(num_layers=2)",
        "lstm",
        L2,
        _stack(L2, "lstm"),
        _torch(L2, "lstm"),
        bars={"fwd": 1.10, "fwd+bwd": 1.10},
        goals={"fwd": 1.00, "fwd+bwd": 1.00},
    ),
    Case(
        "gru-reset-before-2x256",
        "GRU reset_after=False [256, 256]",
        "rnnfuse (BPTT kernel)",
        "nn.GRU(num_layers=2)",
        "gru",
        L2,
        _stack(L2, "gru", reset_after=False),
        _torch(L2, "gru"),
        bars={"fwd": 1.25, "fwd+bwd": 1.50},
        goals={"fwd": 1.10, "fwd+bwd": 1.10},
    ),
    Case(
        "peephole-lstm-2x256",
        "peephole LSTM [256, 256]",
        "rnnfuse (BPTT kernel)",
        "nn.LSTM(num_layers=2), no peepholes",
        "lstm",
        L2,
        _stack(L2, "lstm", peepholes=True),
        _torch(L2, "lstm"),
        bars={"fwd": 1.50, "fwd+bwd": 1.50},
        goals={"fwd": 1.30, "fwd+bwd": 1.20},
    ),
    Case(
        "lstm-clips-proj-2x256",
        "LSTM [256, 256], projection 128, cell_clip and proj_clip",
        "rnnfuse (BPTT kernel)",
        "nn.LSTM(num_layers=2, proj_size=128), no clips",
        "lstm",
        L2,
        _clipped_stack(L2),
        _torch_proj(L2),
        bars={"fwd+bwd": 1.50},
        goals={"fwd+bwd": 1.20},
        proj=PROJ,
    ),
    Case(
        "lstm-512-256-128",
        "LSTM [512, 256, 128]",
        "rnnfuse",
        "3 chained nn.LSTM",
        "lstm",
        L3,
        _stack(L3, "lstm"),
        _torch(L3, "lstm"),
        bars={"fwd": 1.10, "fwd+bwd": 1.10},
    ),
    Case(
        "ragged-lstm-2x256",
        "LSTM [256, 256], lengths uniform in 1..T",
        "rnnfuse ragged",
        "rnnfuse full length",
        "lstm",
        L2,
        _stack(L2, "lstm", ragged=True),
        _stack(L2, "lstm"),
        bars={"fwd+bwd": 0.75},
        goals={"fwd+bwd": 0.60},
        ragged=True,
    ),
    Case(
        "ragged-lstm-2x256-b8",
        "LSTM [256, 256], batch 8, lengths uniform in 1..T",
        "rnnfuse ragged",
        "nn.LSTM(num_layers=2) full length",
        "lstm",
        L2,
        _stack(L2, "lstm", ragged=True),
        _torch(L2, "lstm"),
        bars={"fwd": 1.25},
        goals={"fwd": 1.05},
        ragged=True,
        modes=("fwd",),
        batch=8,
    ),
    Case(
        "ragged-gru-2x256",
        "GRU (reset after) [256, 256], lengths uniform in 1..T",
        "rnnfuse ragged",
        "rnnfuse full length",
        "gru",
        L2,
        _stack(L2, "gru", ragged=True),
        _stack(L2, "gru"),
        ragged=True,
    ),
    Case(
        "ragged-gru-reset-before-2x256",
        "GRU reset_after=False [256, 256], lengths uniform in 1..T",
        "rnnfuse ragged",
        "rnnfuse full length",
        "gru",
        L2,
        _stack(L2, "gru", ragged=True, reset_after=False),
        _stack(L2, "gru", reset_after=False),
        ragged=True,
    ),
    Case(
        "torch-packed-lstm-2x256",
        "nn.LSTM [256, 256] packed (lengths uniform in 1..T)",
        "nn.LSTM + pack_padded_sequence",
        "nn.LSTM full length",
        "lstm",
        L2,
        lambda x, lens, size: torch_packed(x, size.hidden(L2), "lstm", lens),
        _torch(L2, "lstm"),
        ragged=True,
    ),
    Case(
        "ragged-vs-packed-lstm-2x256",
        "LSTM [256, 256] ragged, rnnfuse vs PyTorch's packed",
        "rnnfuse ragged",
        "nn.LSTM + pack_padded_sequence",
        "lstm",
        L2,
        _stack(L2, "lstm", ragged=True),
        lambda x, lens, size: torch_packed(x, size.hidden(L2), "lstm", lens),
        ragged=True,
    ),
    Case(
        "gru-2x256",
        "GRU (reset after) [256, 256]",
        "rnnfuse",
        "nn.GRU(num_layers=2)",
        "gru",
        L2,
        _stack(L2, "gru"),
        _torch(L2, "gru"),
    ),
    Case(
        "lstm-2x256-vs-cell-loop",
        "LSTM [256, 256] vs a per-step nn.LSTMCell loop",
        "rnnfuse",
        "nn.LSTMCell loop",
        "lstm",
        L2,
        _stack(L2, "lstm"),
        lambda x, lens, size: lstmcell_loop(x, size.hidden(L2)),
    ),
    Case(
        "peephole-vs-reference-loop",
        "peephole LSTM [256, 256] vs rnnfuse's reference loop",
        "rnnfuse (BPTT kernel)",
        "rnnfuse reference loop",
        "lstm",
        L2,
        _stack(L2, "lstm", peepholes=True),
        lambda x, lens, size: rnnfuse_loop(x, size.hidden(L2), "lstm", peepholes=True),
    ),
]

# peak memory, forward+backward: (case whose candidate and baseline are measured, bar)
MEMORY_CASES: list[tuple[str, float | None]] = [
    ("lstm-2x256", 1.30),
    ("gru-reset-before-2x256", None),
    ("peephole-lstm-2x256", None),
    ("ragged-lstm-2x256", None),
]


def case_by_name(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(f"no benchmark case {name!r}; known: {[c.name for c in CASES]}")
