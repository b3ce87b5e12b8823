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

__all__ = ["BidirectionalRNN"]


class BidirectionalRNN(nn.Module):
    """TF1's ``bidirectional_dynamic_rnn``: two independent stacks, ``fw`` and ``bw``.

    The backward stack reads each sequence reversed within its length; its outputs are
    reversed back.  ``forward`` returns ``(cat([out_fw, out_bw], -1), (fw_state, bw_state))``;
    :meth:`forward_split` returns TF's ``((out_fw, out_bw), (fw_state, bw_state))``.
    (:class:`~rnnfuse.StackedRNN` with ``bidirectional=True`` instead feeds fw|bw of layer k
    into layer k+1.)
    """

    def __init__(self, fw: StackedRNN, bw: StackedRNN) -> None:
        super().__init__()
        for name, stack in (("fw", fw), ("bw", bw)):
            if not isinstance(stack, StackedRNN) or stack.bidirectional:
                raise TypeError(
                    f"{name}: expected a unidirectional StackedRNN, got {type(stack).__name__}"
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
    def state_sizes(self) -> Any:
        return self.fw.state_sizes, self.bw.state_sizes

    def initial_state(self, batch_size: int, device: Any = None, dtype: Any = None) -> Any:
        return (
            self.fw.initial_state(batch_size, device, dtype),
            self.bw.initial_state(batch_size, device, dtype),
        )

    def forward_split(
        self, x: Tensor, lengths: Any = None, initial_state: Any = None
    ) -> tuple[tuple[Tensor, Tensor], Any]:
        """Run both stacks and return TF's value: ``((out_fw, out_bw), (fw_state, bw_state))``.

        Args:
            x: ``(B, T, F)``, or ``(T, B, F)`` when the stacks are not batch first.
            lengths: ``(B,)`` in any order, or ``None`` for all ``T``; the backward stack reads
                each sequence reversed within its length.
            initial_state: ``None`` or a ``(fw_state, bw_state)`` pair, each in its stack's
                state structure.

        Returns:
            ``(out_fw, out_bw)``, ``(B, T, H_top)`` each in time order, zero past each length,
            and ``(fw_state, bw_state)``, each stack's state at each sequence's last step.

        Raises:
            TypeError: ``initial_state`` is not a pair; the stacks' own checks of ``x`` and
                ``lengths``.
        """
        if initial_state is None:
            initial_state = (None, None)
        elif not (isinstance(initial_state, (tuple, list)) and len(initial_state) == 2):
            raise TypeError(
                "initial_state: expected a (fw_state, bw_state) pair, got "
                f"{type(initial_state).__name__}"
            )
        out_fw, st_fw = self.fw(x, lengths, initial_state[0])
        time_axis = 1 if self.batch_first else 0
        lens = check_lengths(lengths, x.shape[1 - time_axis], x.shape[time_axis], x.device)
        out_bw, st_bw = self.bw(self._reverse(x, lens), lengths, initial_state[1])
        return (out_fw, self._reverse(out_bw, lens)), (st_fw, st_bw)

    def forward(
        self, x: Tensor, lengths: Any = None, initial_state: Any = None
    ) -> tuple[Tensor, Any]:
        """Run both stacks; the outputs joined on the feature axis.

        Args:
            x: ``(B, T, F)``, or ``(T, B, F)`` when the stacks are not batch first.
            lengths: ``(B,)`` in any order, or ``None`` for all ``T``.
            initial_state: ``None`` or a ``(fw_state, bw_state)`` pair.

        Returns:
            ``(outputs, (fw_state, bw_state))``: ``outputs`` is ``(B, T, H_fw + H_bw)``,
            fw|bw, zero past each length (as :meth:`forward_split`, joined).

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
