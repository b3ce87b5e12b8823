"""Sequence to sequence: a decoder stack that starts from the fused state of several encoders.

The encoders (a :class:`~rnnfuse.MultiEncoder`) read their inputs; their states are fused
(concat, sum, a learned fusion module, ...) and, when the decoder's layer sizes differ from
the fused sizes, mapped by a :class:`~rnnfuse.StateBridge`.  That state is the decoder's
initial state.  The decoder reads ``[y_{t-1}, covariates_t]`` at step ``t``:

* :meth:`Seq2Seq.forward` uses the true previous values (teacher forcing, for training);
* :meth:`Seq2Seq.generate` feeds back its own predictions (autoregressive rollout).

With ``feedback=False`` the decoder reads ``covariates_t`` alone (what is known of the forecast
steps, as MQ-RNN's decoder): it runs the same way in training and forecasting, all steps in one
pass, and no forecast error is fed back.

Optionally the decoder attends (Luong et al. 2015, "general" score) over the outputs of all
encoders, joined along the time axis with a mask built from their lengths, so a local and a
global encoder with different numbers of steps share one memory.

>>> import torch
>>> from rnnfuse import MultiEncoder, StackedRNN
>>> enc = MultiEncoder({"local": StackedRNN(3, [20, 20]), "global": StackedRNN(3, [20, 20])})
>>> model = Seq2Seq(enc, StackedRNN(1, [40, 40]), output_size=1)   # 20 + 20 = 40, as in TF1
>>> x = {"local": torch.randn(4, 6, 3), "global": torch.randn(4, 9, 3)}
>>> model.generate(x, start=torch.zeros(4, 1), steps=5).shape
torch.Size([4, 5, 1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from ._checks import check_lengths, describe
from ._named import NameSafeModuleDict
from .bidirectional import BidirectionalRNN
from .encoders import MultiEncoder
from .stack import StackedRNN
from .state import LSTMState, join_directions, state_sizes, structure_str

__all__ = ["Seq2Seq", "LuongAttention", "EncodedSources", "concat_over_time"]


def concat_over_time(
    outputs: Sequence[Tensor], lengths: Sequence[Any] | None = None
) -> tuple[Tensor, Tensor]:
    """Join encoder outputs ``(B, T_k, H)`` along time; return ``(memory, mask)``.

    ``mask`` is ``(B, sum T_k)``, true at the steps inside each source's length (``lengths``:
    one entry per source, each ``None`` for full length or a ``(B,)`` tensor/sequence).
    Padded steps are zeroed in ``memory`` as well.
    """
    if isinstance(outputs, Tensor) or not isinstance(outputs, Sequence) or not outputs:
        raise ValueError("outputs: expected a non-empty list of tensors (B, T_k, H)")
    lengths = [None] * len(outputs) if lengths is None else list(lengths)
    if len(lengths) != len(outputs):
        raise ValueError(
            f"lengths: expected one entry per output ({len(outputs)}), got {len(lengths)}"
        )
    first = outputs[0]
    parts, masks = [], []
    for k, (out, lens) in enumerate(zip(outputs, lengths, strict=True)):
        if not isinstance(out, Tensor) or out.dim() != 3:
            raise ValueError(f"outputs[{k}]: expected a tensor (B, T, H), got {describe(out)}")
        if out.shape[0] != first.shape[0] or out.shape[2] != first.shape[2]:
            raise ValueError(
                f"outputs[{k}]: expected batch {first.shape[0]} and features {first.shape[2]} like "
                f"outputs[0], got shape {list(out.shape)}"
            )
        lens = check_lengths(lens, out.shape[0], out.shape[1], out.device)
        steps = torch.arange(out.shape[1], device=out.device).unsqueeze(0)
        mask = steps < (lens.unsqueeze(1) if lens is not None else out.shape[1])
        mask = mask.expand(out.shape[0], out.shape[1])
        parts.append(out * mask.unsqueeze(-1).to(out.dtype))
        masks.append(mask)
    return torch.cat(parts, dim=1), torch.cat(masks, dim=1)


class LuongAttention(nn.Module):
    """Luong "general" attention over a masked memory, with the attentional output layer.

    ``scores = q W_a m^T`` (``W_a``: ``query_size`` x ``memory_size``); masked steps get no
    weight; ``context = softmax(scores) m``; the result is ``tanh(W_c [q; context])`` of
    size ``output_size`` (``query_size`` by default).
    """

    def __init__(self, query_size: int, memory_size: int, output_size: int | None = None) -> None:
        super().__init__()
        self.query_size = int(query_size)
        self.memory_size = int(memory_size)
        self.output_size = int(output_size or query_size)
        self.score = nn.Linear(self.query_size, self.memory_size, bias=False)
        self.combine = nn.Linear(self.query_size + self.memory_size, self.output_size)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``query`` (B, T_q, Q), ``memory`` (B, T_m, M), ``mask`` (B, T_m) bool.

        Returns ``(attentional outputs (B, T_q, output_size), weights (B, T_q, T_m))``.
        A row whose mask is all false gets zero weights and a zero context.
        """
        scores = torch.bmm(self.score(query), memory.transpose(1, 2))
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        context = torch.bmm(weights, memory)
        return torch.tanh(self.combine(torch.cat([query, context], dim=-1))), weights


class EncodedSources(NamedTuple):
    """What the decoder needs from the encoders: its initial state and the attention memory.

    ``state``: the fused state (after the bridge, if any); ``memory``/``mask``: the encoder
    outputs joined along time and their validity mask, or ``None`` without attention.
    """

    state: Any
    memory: Tensor | None
    mask: Tensor | None


class Seq2Seq(nn.Module):
    """Encoders → fused state (→ bridge) → decoder stack → output layer.

    Args:
        encoders: a :class:`~rnnfuse.MultiEncoder` (its ``fusion`` joins the states).
        decoder: a :class:`~rnnfuse.StackedRNN` (unidirectional, batch first) whose input is
            ``output_size + covariate_size`` features.  Its state structure must equal the
            fused state's, or the bridge's output.
        output_size: features predicted per step.
        bridge: ``None`` (the fused state is the decoder's initial state as it is) or a
            module mapping the fused state to the decoder's sizes (a
            :class:`~rnnfuse.StateBridge` built for the fused sizes).
        attention: add :class:`LuongAttention` over all encoder outputs.
        attention_size: the memory size; each encoder's outputs are projected to it.
        feedback: the decoder reads the previous value (``True``: ``output_size +
            covariate_size`` input features) or only the covariates (``False``:
            ``covariate_size`` input features, at least one); see the module docstring.

    Example:
        >>> import torch
        >>> from rnnfuse import MultiEncoder, StackedRNN
        >>> encoders = MultiEncoder({"local": StackedRNN(3, [8]), "global": StackedRNN(3, [8])})
        >>> model = Seq2Seq(encoders, StackedRNN(1, [16]), output_size=1)
        >>> x = {"local": torch.randn(2, 6, 3), "global": torch.randn(2, 12, 3)}
        >>> tuple(model.generate(x, start=torch.zeros(2, 1), steps=4).shape)
        (2, 4, 1)

        Without feedback the decoder reads only the covariates (here 2 per step):

        >>> direct = Seq2Seq(encoders, StackedRNN(2, [16]), output_size=1, feedback=False)
        >>> tuple(direct.generate(x, start=torch.zeros(2, 1), steps=4,
        ...                       covariates=torch.randn(2, 4, 2)).shape)
        (2, 4, 1)
    """

    def __init__(
        self,
        encoders: MultiEncoder,
        decoder: StackedRNN,
        output_size: int,
        *,
        bridge: nn.Module | None = None,
        attention: bool = False,
        attention_size: int = 32,
        feedback: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(encoders, MultiEncoder):
            raise TypeError(f"encoders: expected a MultiEncoder, got {type(encoders).__name__}")
        if not isinstance(decoder, StackedRNN):
            raise TypeError(f"decoder: expected a StackedRNN, got {type(decoder).__name__}")
        if any(decoder.bidirectional) or not decoder.batch_first:
            raise ValueError("decoder: expected a unidirectional, batch_first StackedRNN")
        if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 1:
            raise ValueError(f"output_size: expected a positive int, got {output_size!r}")
        if not isinstance(feedback, bool):
            raise TypeError(f"feedback: expected a bool, got {type(feedback).__name__}")
        if feedback and decoder.input_size < output_size:
            raise ValueError(
                f"decoder: its input is [y_(t-1) ({output_size}), covariates]; expected input_size "
                f">= {output_size}, got {decoder.input_size}"
            )
        self.encoders = encoders
        self.decoder = decoder
        self.bridge = bridge
        self.output_size = int(output_size)
        self.feedback = feedback
        self.covariate_size = decoder.input_size - (self.output_size if feedback else 0)
        top = decoder.output_size
        self.attention: LuongAttention | None = None
        if attention:
            self.memory_maps = NameSafeModuleDict(
                {
                    name: nn.Linear(_output_size(enc, name), attention_size)
                    for name, enc in encoders.encoders.items()
                }
            )
            self.attention = LuongAttention(top, attention_size)
        self.head = nn.Linear(top, self.output_size)
        self._check_built_sizes()

    def _check_built_sizes(self) -> None:
        """The decoder's state sizes against what the encoders deliver, when both are known
        (parameter-free fusions and a StateBridge): a mismatch is found here, not at the
        first call."""
        fused = (
            _fused_sizes(self.encoders)
            if self.bridge is None
            else getattr(self.bridge, "output_sizes", None)
        )
        if fused is None:
            return
        expected = self.decoder.state_sizes
        if tuple(fused) != tuple(expected):
            raise ValueError(
                f"decoder: its initial state must have sizes {expected}, but the fused state "
                f"{'after the bridge ' if self.bridge is not None else ''}has sizes "
                f"{tuple(fused)}; make the decoder's layer sizes and cell kinds equal the fused "
                "ones or pass bridge=StateBridge(fused_sizes, decoder_sizes)"
            )

    # ------------------------------------------------------------------ encoding
    def encode(self, inputs: Tensor | Mapping[str, Tensor], lengths: Any = None) -> EncodedSources:
        """Run the encoders; return the decoder's initial state and the attention memory."""
        result = self.encoders(inputs, lengths)
        state = result.state if self.bridge is None else self.bridge(result.state)
        self._check_decoder_state(state)
        if self.attention is None:
            return EncodedSources(state, None, None)
        names = self.encoders.names
        outs = [
            self.memory_maps[n](_batch_major(result.encoder_outputs[n], self.encoders.encoders[n]))
            for n in names
        ]
        lens = [lengths.get(n) if isinstance(lengths, Mapping) else lengths for n in names]
        memory, mask = concat_over_time(outs, lens)
        return EncodedSources(state, memory, mask)

    def _check_decoder_state(self, state: Any) -> None:
        expected = self.decoder.state_sizes
        got = state_sizes(state) if isinstance(state, (tuple, list)) else None
        if got != expected:
            raise ValueError(
                f"decoder: its initial state must have sizes {expected}, but the fused state "
                f"{'after the bridge ' if self.bridge is not None else ''}is "
                f"{structure_str(state)}; make the decoder's layer sizes and cell kinds equal the "
                "fused ones or pass bridge=StateBridge(fused_sizes, decoder_sizes)"
            )

    # ------------------------------------------------------------------ decoding
    def decode(self, sources: EncodedSources, decoder_inputs: Tensor) -> tuple[Tensor, Any]:
        """Run the decoder from ``sources.state`` over ``decoder_inputs`` (B, T, I).

        Returns ``(predictions (B, T, output_size), final decoder state)``.
        """
        outputs, state = self.decoder(decoder_inputs, initial_state=sources.state)
        return self._readout(outputs, sources), state

    def _readout(self, outputs: Tensor, sources: EncodedSources) -> Tensor:
        if self.attention is not None:
            outputs, _ = self.attention(outputs, sources.memory, sources.mask)
        return self.head(outputs)

    def forward(
        self,
        inputs: Tensor | Mapping[str, Tensor],
        targets: Tensor,
        *,
        start: Tensor,
        covariates: Tensor | None = None,
        lengths: Any = None,
    ) -> Tensor:
        """Teacher forcing: step ``t`` reads the true ``targets[:, t-1]`` (``start`` at t=0);
        without feedback, only ``covariates[:, t]`` (``targets`` then sets the steps alone).

        Args:
            inputs: the encoders' input: one ``(B, T, F)`` tensor for all, or a mapping by
                encoder name (see :meth:`rnnfuse.encoders.MultiEncoder.forward`).
            targets: the true values of the decoded steps, ``(B, T_dec, output_size)``.
            start: the decoder's first input, ``(B, output_size)`` (e.g. the last observed
                value).
            covariates: ``(B, T_dec, covariate_size)`` known for the decoded steps, or
                ``None`` when the model has none.
            lengths: the encoders' lengths: ``None``, one ``(B,)`` tensor, or a mapping by
                encoder name.

        Returns:
            The predictions, ``(B, T_dec, output_size)``, like ``targets``.

        Raises:
            ValueError: ``targets``, ``start`` or ``covariates`` of the wrong shape, or
                covariates given to a model without them (or missing); the encoders' checks.
        """
        if not isinstance(targets, Tensor) or targets.dim() != 3:
            raise ValueError(
                f"targets: expected a tensor (B, T, {self.output_size}), got {describe(targets)}"
            )
        self._check_decoder_args(targets, start, covariates, targets.shape[1])
        if not self.feedback:
            return self._decode_covariates(inputs, lengths, covariates, targets.shape[1])
        # [start, targets[:, :-1]], cut after the join: a slice of T - 1 steps would make an
        # exporter's dynamic T specialize (a guard T - 1 != 1 from the join's stride check)
        previous = torch.cat([start.unsqueeze(1), targets], dim=1).narrow(1, 0, targets.shape[1])
        dec_in = previous if covariates is None else torch.cat([previous, covariates], dim=-1)
        return self.decode(self.encode(inputs, lengths), dec_in)[0]

    def generate(
        self,
        inputs: Tensor | Mapping[str, Tensor],
        *,
        start: Tensor,
        steps: int,
        covariates: Tensor | None = None,
        lengths: Any = None,
    ) -> Tensor:
        """Autoregressive rollout of ``steps`` steps: each prediction is the next input
        (without feedback: the decoder over ``covariates`` in one pass, as :meth:`forward`).

        Args:
            inputs: the encoders' input, as in :meth:`forward`.
            start: the first decoder input, ``(B, output_size)``.
            steps: how many steps to forecast, a positive int.
            covariates: ``(B, steps, covariate_size)`` known for the forecast steps, or
                ``None``.
            lengths: the encoders' lengths, as in :meth:`forward`.

        Returns:
            The forecast, ``(B, steps, output_size)``.

        Raises:
            ValueError: ``steps`` is not a positive int, or ``start`` or ``covariates`` has
                the wrong shape.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive int, got {steps!r}")
        self._check_decoder_args(None, start, covariates, steps)
        if not self.feedback:
            return self._decode_covariates(inputs, lengths, covariates, steps)
        sources = self.encode(inputs, lengths)
        state, previous, predictions = sources.state, start, []
        for t in range(steps):
            x = previous if covariates is None else torch.cat([previous, covariates[:, t]], dim=-1)
            out, state = self.decoder(x.unsqueeze(1), initial_state=state)
            previous = self._readout(out, sources)[:, 0]
            predictions.append(previous)
        return torch.stack(predictions, dim=1)

    def _decode_covariates(
        self, inputs: Any, lengths: Any, covariates: Tensor | None, steps: Any
    ) -> Tensor:
        """The decoder without feedback: it reads the first ``steps`` covariates only."""
        known = cast(Tensor, covariates)  # checked: a decoder without feedback reads them
        return self.decode(self.encode(inputs, lengths), known.narrow(1, 0, steps))[0]

    def _check_decoder_args(
        self,
        targets: Tensor | None,
        start: Tensor,
        covariates: Tensor | None,
        steps: int | torch.SymInt,
    ) -> None:
        """``steps``: the rollout's int, or ``targets``' time dimension (symbolic while an
        exporter traces with a dynamic time dimension)."""
        if not isinstance(start, Tensor) or start.dim() != 2 or start.shape[1] != self.output_size:
            raise ValueError(
                f"start: expected a tensor (B, {self.output_size}), got {describe(start)}"
            )
        batch = start.shape[0]
        if targets is not None and (
            not isinstance(targets, Tensor)
            or list(targets.shape) != [batch, steps, self.output_size]
        ):
            raise ValueError(
                f"targets: expected shape [{batch}, T, {self.output_size}], got {describe(targets)}"
            )
        if self.covariate_size == 0 and covariates is not None:
            raise ValueError(
                f"covariates: the decoder reads only y_(t-1) ({self.output_size} "
                "features); got covariates"
            )
        feeding = f" minus output_size {self.output_size}" if self.feedback else ", no feedback"
        if self.covariate_size and (
            not isinstance(covariates, Tensor)
            or covariates.dim() != 3
            or covariates.shape[0] != batch
            or covariates.shape[1] < steps
            or covariates.shape[2] != self.covariate_size
        ):
            raise ValueError(
                f"covariates: expected shape [{batch}, {steps}, {self.covariate_size}] (decoder "
                f"input_size {self.decoder.input_size}{feeding}), got {describe(covariates)}"
            )


def _batch_major(outputs: Tensor, encoder: nn.Module) -> Tensor:
    """An encoder's outputs as (B, T, H); a time-major encoder
    (``batch_first=False``) gives (T, B, H)."""
    return outputs if getattr(encoder, "batch_first", True) else outputs.transpose(0, 1)


def _output_size(encoder: nn.Module, name: str) -> int:
    size = getattr(encoder, "output_size", None)
    if not isinstance(size, int):
        raise TypeError(
            f"encoders[{name!r}]: attention needs an encoder with an int output_size, got {size!r}"
        )
    return size


def _fused_sizes(encoders: MultiEncoder) -> tuple[Any, ...] | None:
    """The sizes of the fused state when they follow from the encoders alone (stacks joined
    by a parameter-free fusion; each pair of directions joined, as
    :class:`~rnnfuse.MultiEncoder` does); ``None`` when only a call can tell."""
    sizes = []
    for enc in encoders.encoders.values():
        if not isinstance(enc, (StackedRNN, BidirectionalRNN)):
            return None
        sizes.append(join_directions(enc.state_sizes))
    if len(sizes) == 1:
        return sizes[0]
    if not isinstance(encoders.fusion, str) or len({len(s) for s in sizes}) != 1:
        return None
    if encoders.fusion != "concat":
        return sizes[0] if all(s == sizes[0] for s in sizes) else None
    joined = [_joined_layer(parts) for parts in zip(*sizes, strict=True)]
    return None if any(j is None for j in joined) else tuple(joined)


def _joined_layer(parts: tuple[Any, ...]) -> Any:
    """The size of one layer's states concatenated: an int, an LSTMState,
    or ``None`` (mixed kinds)."""
    if all(isinstance(p, LSTMState) for p in parts):
        return LSTMState(sum(p.c for p in parts), sum(p.h for p in parts))
    if all(isinstance(p, int) and not isinstance(p, LSTMState) for p in parts):
        return sum(parts)
    return None
