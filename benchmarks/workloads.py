"""The models that the benchmarks run: rnnfuse stacks and their PyTorch counterparts.

A :class:`Workload` is a module and a function computing a scalar from its outputs, so the
same object gives the forward (``eval`` mode, ``no_grad``) and the forward+backward
(``train`` mode, gradients of every parameter and of the input).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnfuse import StackedRNN
from rnnfuse.kernels import run_loop

__all__ = [
    "Size",
    "Workload",
    "make_inputs",
    "rnnfuse_stack",
    "rnnfuse_loop",
    "torch_stack",
    "torch_packed",
    "lstmcell_loop",
    "layer_flops",
]


@dataclass(frozen=True)
class Size:
    """Batch, steps and input features of a benchmark case, and a divisor for hidden sizes."""

    batch: int = 64
    steps: int = 100
    features: int = 128
    shrink: int = 1

    def hidden(self, sizes: list[int]) -> list[int]:
        return [max(4, h // self.shrink) for h in sizes]


@dataclass
class Workload:
    """A module and the loss of one run (``ragged``: with the case's lengths)."""

    module: nn.Module
    loss: Callable[[], Tensor]
    x: Tensor

    def forward(self) -> None:
        self.module.eval()
        with torch.no_grad():
            self.loss()

    def forward_backward(self) -> None:
        self.module.train()
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        self.loss().backward()


def make_inputs(size: Size, device: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``x`` (B, T, F) requiring grad, and lengths uniform in 1..T (unsorted)."""
    gen = torch.Generator().manual_seed(seed)
    x = (
        torch.randn(size.batch, size.steps, size.features, generator=gen)
        .to(device)
        .requires_grad_()
    )
    lengths = torch.randint(1, size.steps + 1, (size.batch,), generator=gen).to(device)
    return x, lengths


def rnnfuse_stack(
    x: Tensor, sizes: list[int], cell: str, lengths: Tensor | None = None, **options: object
) -> Workload:
    """A :class:`rnnfuse.StackedRNN` (fast paths chosen by ``run_layer``)."""
    stack = StackedRNN(x.shape[-1], sizes, cell=cell, **options).to(x.device)
    return Workload(stack, lambda: stack(x, lengths)[0].sum(), x)


def rnnfuse_loop(
    x: Tensor, sizes: list[int], cell: str, lengths: Tensor | None = None, **options: object
) -> Workload:
    """The same stack run by the reference loop (``run_loop``) layer after layer."""
    stack = StackedRNN(x.shape[-1], sizes, cell=cell, **options).to(x.device)

    def loss() -> Tensor:
        out = x
        for layer in stack.layers:
            out, _ = run_loop(
                layer, out, lengths, layer.initial_state(x.shape[0], x.device, x.dtype)
            )
        return out.sum()

    return Workload(stack, loss, x)


def _torch_modules(kind: str, features: int, sizes: list[int], **opts: int) -> nn.ModuleList:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU}[kind]
    if len(set(sizes)) == 1:
        return nn.ModuleList(
            [cls(features, sizes[0], num_layers=len(sizes), batch_first=True, **opts)]
        )
    ins = [features, *sizes[:-1]]
    return nn.ModuleList(
        [cls(i, h, batch_first=True, **opts) for i, h in zip(ins, sizes, strict=True)]
    )


def torch_stack(x: Tensor, sizes: list[int], kind: str, **opts: int) -> Workload:
    """``nn.LSTM``/``nn.GRU``: one multi-layer module when sizes are equal, else chained;
    ``opts`` such as ``proj_size`` go to every module."""
    mods = _torch_modules(kind, x.shape[-1], sizes, **opts).to(x.device)

    def loss() -> Tensor:
        out = x
        for mod in mods:
            out = mod(out)[0]
        return out.sum()

    return Workload(mods, loss, x)


def torch_packed(x: Tensor, sizes: list[int], kind: str, lengths: Tensor) -> Workload:
    """PyTorch's way to a ragged batch: ``pack_padded_sequence(enforce_sorted=False)``."""
    mods = _torch_modules(kind, x.shape[-1], sizes).to(x.device)

    def loss() -> Tensor:
        out = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        for mod in mods:
            out = mod(out)[0]
        return pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0].sum()

    return Workload(mods, loss, x)


def lstmcell_loop(x: Tensor, sizes: list[int]) -> Workload:
    """A per-step ``nn.LSTMCell`` loop, the way many hand-written encoders run."""
    ins = [x.shape[-1], *sizes[:-1]]
    cells = nn.ModuleList([nn.LSTMCell(i, h) for i, h in zip(ins, sizes, strict=True)]).to(x.device)

    def loss() -> Tensor:
        batch = x.shape[0]
        states = [(x.new_zeros(batch, h), x.new_zeros(batch, h)) for h in sizes]
        outs = []
        for t in range(x.shape[1]):
            inp = x[:, t]
            for k, cell in enumerate(cells):
                states[k] = cell(inp, states[k])
                inp = states[k][0]
            outs.append(inp)
        return torch.stack(outs, 1).sum()

    return Workload(cells, loss, x)


def layer_flops(
    kind: str, features: int, sizes: list[int], tokens: int, backward: bool, proj: int | None = None
) -> float:
    """Matrix-multiply flops of a stack over ``tokens`` (batch × steps actually run), as the
    kernels do them.

    Per token and layer, forward: ``2 G H (input + P)`` with G gates (LSTM 4, GRU 3, RNN 1)
    and P the layer's output size (``proj``, else H), plus ``2 P H`` for a projection.  The
    backward does two products of each forward one's size (the gradient of its input and of
    its weight), so forward+backward is 3× the forward.  Elementwise work is not counted.
    """
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    total, inp = 0.0, features
    for h in sizes:
        out = proj or h
        total += 2 * gates * h * (inp + out) + (2 * out * h if proj else 0)
        inp = out
    return total * tokens * (3 if backward else 1)
