"""TF1's ``bidirectional_dynamic_rnn`` as a module: two independent stacks.

Unlike :class:`~rnnfuse.StackedRNN` with ``bidirectional=True`` (PyTorch's layout, where
layer k+1 reads fw|bw of layer k), :class:`BidirectionalRNN` runs a forward and a backward
stack side by side; the backward one reads each sequence reversed within its length.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._checks import check_lengths
from .kernels import reverse_within_lengths
from .stack import StackedRNN
from .state import BidirectionalState, structure_str

__all__ = ["BidirectionalRNN"]


class BidirectionalRNN(nn.Module):
    """TF1's ``bidirectional_dynamic_rnn``: two independent stacks, ``fw`` and ``bw``.

    The backward stack reads each sequence reversed within its length; its outputs are
    reversed back.  (:class:`~rnnfuse.StackedRNN` with ``bidirectional=True`` instead feeds
    fw|bw of layer k into layer k+1.)

    Args:
        fw: the forward stack, a unidirectional :class:`~rnnfuse.StackedRNN`.
        bw: the backward stack, unidirectional, with ``fw``'s ``input_size`` and
            ``batch_first``.

    Raises:
        TypeError: a stack that is no unidirectional ``StackedRNN``.
        ValueError: the two stacks differ in ``input_size`` or ``batch_first``.

    Example:
        >>> import torch
        >>> from rnnfuse import StackedRNN
        >>> bi = BidirectionalRNN(StackedRNN(3, [4, 4]), StackedRNN(3, [5]))
        >>> y, state = bi(torch.randn(2, 6, 3), lengths=[6, 3])
        >>> y.shape, type(state).__name__, len(state.fw), tuple(state.bw[0].h.shape)
        (torch.Size([2, 6, 9]), 'BidirectionalState', 2, (2, 5))
    """

    def __init__(self, fw: StackedRNN, bw: StackedRNN) -> None:
        super().__init__()
        for name, stack in (("fw", fw), ("bw", bw)):
            if not isinstance(stack, StackedRNN) or any(stack.bidirectional):
                raise TypeError(
                    f"{name}: expected a unidirectional StackedRNN, got {_describe_stack(stack)}"
                )
        if fw.input_size != bw.input_size or fw.batch_first != bw.batch_first:
            raise ValueError(
                f"bw: expected input_size={fw.input_size}, batch_first={fw.batch_first} "
                f"like fw, got {bw.input_size}, {bw.batch_first}"
            )
        self.fw, self.bw = fw, bw

    @property
    def batch_first(self) -> bool:
        return self.fw.batch_first

    @property
    def input_size(self) -> int:
        return self.fw.input_size

    @property
    def output_size(self) -> int:
        return self.fw.output_size + self.bw.output_size

    @property
    def state_sizes(self) -> BidirectionalState:
        """``BidirectionalState(fw stack's state_sizes, bw stack's state_sizes)``."""
        return BidirectionalState(self.fw.state_sizes, self.bw.state_sizes)

    def initial_state(
        self, batch_size: int, device: Any = None, dtype: Any = None
    ) -> BidirectionalState:
        """The zero state: ``BidirectionalState(fw stack's, bw stack's)``."""
        return BidirectionalState(
            self.fw.initial_state(batch_size, device, dtype),
            self.bw.initial_state(batch_size, device, dtype),
        )

    def forward_split(
        self, x: Tensor, lengths: Any = None, initial_state: BidirectionalState | None = None
    ) -> tuple[tuple[Tensor, Tensor], BidirectionalState]:
        """Run both stacks and return TF's value: ``((out_fw, out_bw), state)``.

        Args:
            x: ``(B, T, F)``, or ``(T, B, F)`` when the stacks are not batch first.
            lengths: ``(B,)`` in any order, or ``None`` for all ``T``; the backward stack reads
                each sequence reversed within its length.
            initial_state: ``None`` or a ``BidirectionalState(fw, bw)`` of the two stacks'
                states, each in its stack's state structure.

        Returns:
            ``(out_fw, out_bw)``, ``(B, T, H_fw)`` and ``(B, T, H_bw)`` in time order, zero
            past each length, and ``BidirectionalState(fw, bw)``, each stack's state (a tuple,
            one layer state per layer) at each sequence's last step.

        Raises:
            TypeError: ``initial_state`` is not a ``BidirectionalState``; the stacks' own
                checks of ``x`` and ``lengths``.
        """
        start = _check_pair(initial_state)
        out_fw, st_fw = self.fw(x, lengths, start.fw)
        time_axis = 1 if self.batch_first else 0
        lens = check_lengths(lengths, x.shape[1 - time_axis], x.shape[time_axis], x.device)
        out_bw, st_bw = self.bw(self._reverse(x, lens), lengths, start.bw)
        return (out_fw, self._reverse(out_bw, lens)), BidirectionalState(st_fw, st_bw)

    def forward(
        self, x: Tensor, lengths: Any = None, initial_state: BidirectionalState | None = None
    ) -> tuple[Tensor, BidirectionalState]:
        """Run both stacks over ``x``.

        Args:
            x: ``(B, T, F)`` if ``batch_first``, else ``(T, B, F)``.
            lengths: ``None`` or ``(B,)`` ints in ``[0, T]``, in any order.
            initial_state: ``None`` (zeros) or a ``BidirectionalState(fw, bw)`` of the two
                stacks' states (each as :meth:`StackedRNN.initial_state`).

        Returns:
            ``(outputs, state)``: ``outputs`` ``(B, T, H_fw + H_bw)`` (time-major without
            ``batch_first``), fw|bw, zero past each length; ``state`` a
            ``BidirectionalState(fw, bw)`` of the two stacks' states (tuples, one layer state
            per layer, at each sequence's last step).

        Raises:
            TypeError: an ``initial_state`` that is no ``BidirectionalState``.
            ValueError: as :meth:`StackedRNN.forward`, for either stack.

        Example:
            >>> import torch
            >>> from rnnfuse import StackedRNN
            >>> rnn = BidirectionalRNN(StackedRNN(6, [8]), StackedRNN(6, [4]))
            >>> outputs, (fw, bw) = rnn(torch.randn(3, 5, 6), torch.tensor([5, 2, 4]))
            >>> tuple(outputs.shape), tuple(fw[0].h.shape), tuple(bw[0].h.shape)
            ((3, 5, 12), (3, 8), (3, 4))
        """
        (out_fw, out_bw), state = self.forward_split(x, lengths, initial_state)
        return torch.cat([out_fw, out_bw], dim=-1), state

    def _reverse(self, x: Tensor, lens: Tensor | None) -> Tensor:
        if self.batch_first:
            return reverse_within_lengths(x, lens)
        return reverse_within_lengths(x.transpose(0, 1), lens).transpose(0, 1)


def _check_pair(initial_state: Any) -> BidirectionalState:
    if initial_state is None:
        return BidirectionalState(None, None)
    if not isinstance(initial_state, BidirectionalState):
        raise TypeError(
            "initial_state: expected a BidirectionalState(fw, bw) of the two stacks' states, "
            f"got {structure_str(initial_state)}"
        )
    return initial_state


def _describe_stack(stack: Any) -> str:
    if isinstance(stack, StackedRNN):
        return f"a StackedRNN with bidirectional={stack.bidirectional}"
    return type(stack).__name__
