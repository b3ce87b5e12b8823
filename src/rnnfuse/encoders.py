"""MultiEncoder: several named encoders whose states (and outputs) are fused.

>>> import torch
>>> from rnnfuse import MultiEncoder, StackedRNN
>>> enc = MultiEncoder({"local": StackedRNN(6, [20, 20], "gru"),
...                     "global": StackedRNN(6, [20, 20], "gru")}, fusion="concat")
>>> result = enc(torch.randn(3, 5, 6))          # one input shared by both encoders
>>> result.outputs.shape, [tuple(s.shape) for s in result.state]
(torch.Size([3, 5, 40]), [(3, 40), (3, 40)])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.fx.experimental.symbolic_shapes import statically_known_true, sym_eq

from ._named import NameSafeModuleDict
from .fusion import FUSION_FUNCTIONS
from .state import join_directions

__all__ = ["MultiEncoder", "MultiEncoderOutput"]


class MultiEncoderOutput(NamedTuple):
    """What :class:`MultiEncoder` returns.

    Attributes:
        outputs: the encoders' outputs joined on the feature axis, ``(B, T, H_1 + ... +
            H_n)``, when they share the batch and time axes, else ``None`` (use
            ``encoder_outputs``).
        state: the fused stack state, plain (each encoder's pairs of directions joined
            first): per layer ``LSTMState(c, h)`` of ``(B, H_k)`` tensors or one ``(B, H_k)``
            tensor.
        encoder_outputs: each encoder's outputs ``(B, T_name, H_name)``, by name.
        encoder_states: each encoder's stack state by name, each
            :class:`~rnnfuse.state.BidirectionalState` joined fw|bw
            (:func:`rnnfuse.state.join_directions`).
    """

    outputs: Tensor | None
    state: Any
    encoder_outputs: dict[str, Tensor]
    encoder_states: dict[str, Any]


class MultiEncoder(nn.Module):
    """Named encoders, each with its own input and lengths or one shared input.

    Args:
        encoders: name → :class:`StackedRNN` (any module with the same call contract).
        fusion: ``"concat"``, ``"sum"``, ``"mean"``, ``"max"``, or a module taking a list
            of stack states (e.g. :class:`~rnnfuse.ZophKnightFusion`) in the order of
            ``encoders``.  Each :class:`~rnnfuse.state.BidirectionalState` in an encoder's
            state (a bidirectional layer's, or a :class:`~rnnfuse.BidirectionalRNN`'s) is
            joined first (fw|bw, :func:`rnnfuse.state.join_directions`), so every encoder
            contributes one plain stack state.

    Raises:
        TypeError: ``encoders`` is no non-empty mapping, ``fusion`` no name or module.
        ValueError: an unknown fusion name.
    """

    def __init__(
        self, encoders: Mapping[str, nn.Module], fusion: str | nn.Module = "concat"
    ) -> None:
        super().__init__()
        if not isinstance(encoders, Mapping) or len(encoders) < 1:
            raise TypeError(
                "encoders: expected a non-empty mapping name -> encoder, got "
                f"{type(encoders).__name__}"
            )
        if isinstance(fusion, str) and fusion not in FUSION_FUNCTIONS:
            raise ValueError(
                f"fusion: expected one of {sorted(FUSION_FUNCTIONS)} or a module, got {fusion!r}"
            )
        if not isinstance(fusion, (str, nn.Module)):
            raise TypeError(f"fusion: expected a name or an nn.Module, got {type(fusion).__name__}")
        self.encoders = NameSafeModuleDict(dict(encoders))
        self.fusion = fusion

    @property
    def names(self) -> list[str]:
        return list(self.encoders.keys())

    def forward(
        self, inputs: Tensor | Mapping[str, Tensor], lengths: Any = None
    ) -> MultiEncoderOutput:
        """Run every encoder and fuse their states.

        Args:
            inputs: one ``(B, T, F)`` tensor that every encoder reads, or a mapping from
                each encoder's name to its own input ``(B, T_name, F_name)``.
            lengths: ``None``, one ``(B,)`` tensor for every encoder, or a mapping by name
                (an encoder missing from it reads full sequences).

        Returns:
            A :class:`MultiEncoderOutput`: the joined outputs, the fused state and each
            encoder's own outputs and state.

        Raises:
            ValueError: a mapping names an unknown encoder or misses an encoder's input;
                the encoders' own checks and the fusion's (structures, sizes) as they raise.

        Example:
            >>> import torch
            >>> from rnnfuse import StackedRNN
            >>> encoders = MultiEncoder({"local": StackedRNN(3, [8]), "global": StackedRNN(3, [8])})
            >>> x = {"local": torch.randn(2, 5, 3), "global": torch.randn(2, 9, 3)}
            >>> result = encoders(x, {"global": torch.tensor([9, 4])})
            >>> result.outputs is None, tuple(result.state[0].h.shape)
            (True, (2, 16))
            >>> from rnnfuse import BidirectionalRNN
            >>> both = MultiEncoder({"a": StackedRNN(6, [4], "gru", bidirectional=True),
            ...                      "b": BidirectionalRNN(StackedRNN(6, [4], "gru"),
            ...                                            StackedRNN(6, [4], "gru"))})
            >>> [tuple(s.shape) for s in both(torch.randn(3, 5, 6)).state]  # 4|4 twice
            [(3, 16)]
        """
        self._check_keys(inputs, "inputs")
        self._check_keys(lengths, "lengths")
        outputs: dict[str, Tensor] = {}
        states: dict[str, Any] = {}
        for name, encoder in self.encoders.items():
            x = self._pick(inputs, name, "inputs", required=True)
            lens = self._pick(lengths, name, "lengths", required=False)
            out, state = encoder(x, lens)
            outputs[name] = out
            states[name] = join_directions(state)
        fused = self._fuse(list(states.values()))
        joined = self._join_outputs(outputs)
        return MultiEncoderOutput(joined, fused, outputs, states)

    def _check_keys(self, value: Any, what: str) -> None:
        """A mapping may not name encoders that do not exist (a typo would be ignored)."""
        if isinstance(value, Mapping):
            unknown = sorted(str(k) for k in value if k not in self.encoders)
            if unknown:
                raise ValueError(
                    f"{what}: unknown encoder names {unknown}; expected keys {self.names}"
                )

    def _pick(self, value: Any, name: str, what: str, required: bool) -> Any:
        if not isinstance(value, Mapping):
            return value
        if name not in value:
            if required:
                raise ValueError(
                    f"{what}: no entry for encoder {name!r}; expected keys "
                    f"{self.names}, got {sorted(value)}"
                )
            return None
        return value[name]

    def _fuse(self, states: list[Any]) -> Any:
        if len(states) == 1:
            return states[0]
        if isinstance(self.fusion, str):
            return FUSION_FUNCTIONS[self.fusion](states)
        return self.fusion(states)

    @staticmethod
    def _join_outputs(outputs: dict[str, Tensor]) -> Tensor | None:
        """The outputs joined on the feature axis where all have the same batch and time
        sizes, else ``None``.  While ``torch.export`` traces with dynamic sizes, "the same" means
        provably the same (one ``Dim`` for all): a test of unrelated sizes would specialize them."""
        values = list(outputs.values())
        first = tuple(values[0].shape[:2])
        if (
            torch.compiler.is_exporting()
        ):  # torch.compile guards on the test (and recompiles) instead
            same = all(statically_known_true(sym_eq(tuple(v.shape[:2]), first)) for v in values[1:])
        else:
            same = all(tuple(v.shape[:2]) == first for v in values[1:])
        if not same:
            return None
        return (
            values[0] if len(values) == 1 else torch.cat(values, dim=-1)
        )  # zero past lengths already
