"""Building the local + global forecaster (a :class:`~rnnfuse.seq2seq.Seq2Seq`) from a config.

Fusions: ``local`` / ``global`` (one encoder, its state goes to the decoder as it is),
``concat`` / ``sum`` / ``mean`` / ``max`` (parameter-free), ``bridge`` (concatenation, then a
:class:`~rnnfuse.StateBridge` to the decoder's sizes), ``zoph-knight`` (basic), ``child-sum``
and ``gated``.  When the decoder's sizes differ from the fused sizes a StateBridge is added.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..encoders import MultiEncoder
from ..fusion import ChildSumFusion, GatedFusion, StateBridge, ZophKnightFusion
from ..seq2seq import Seq2Seq
from ..stack import StackedRNN
from ..state import LSTMState
from .config import ConfigError, ModelConfig

__all__ = ["build_model", "ENCODER_FEATURES", "DECODER_COVARIATES", "count_parameters"]

ENCODER_FEATURES = 3  # normalised value, sin and cos of the phase
DECODER_COVARIATES = 2  # sin and cos of the phase of the forecast step
_MODULES = {"zoph-knight": ZophKnightFusion, "child-sum": ChildSumFusion, "gated": GatedFusion}


def build_model(
    config: ModelConfig, extra_covariates: int = 0, encoder_covariates: int = 0
) -> Seq2Seq:
    """The forecaster for ``config`` (weights drawn from torch's global generator);
    ``extra_covariates`` more decoder inputs per step (the demo's hybrids: a classical forecast);
    ``encoder_covariates`` more encoder inputs per step (the data's covariates)."""
    encoders = {}
    features = ENCODER_FEATURES + encoder_covariates
    if config.fusion != "global":
        encoders["local"] = StackedRNN(features, list(config.local_sizes), config.local_cell)
    if config.fusion != "local":
        encoders["global"] = StackedRNN(features, list(config.global_sizes), config.global_cell)
    sizes = [enc.state_sizes for enc in encoders.values()]
    fused, fusion = _fusion(config.fusion, sizes)
    default = sizes[0] if config.fusion == "bridge" else fused
    decoder_sizes = list(config.decoder_sizes) if config.decoder_sizes else [_h(s) for s in default]
    cell = config.decoder_cell or (
        config.global_cell if config.fusion == "global" else config.local_cell
    )
    fed_back = 1 if config.decoder_feedback else 0  # the previous value, or none
    decoder = StackedRNN(fed_back + DECODER_COVARIATES + extra_covariates, decoder_sizes, cell)
    bridge = None
    if decoder.state_sizes != tuple(fused):
        bridge = _bridge(fused, decoder.state_sizes)
    return Seq2Seq(
        MultiEncoder(encoders, fusion=fusion),
        decoder,
        1,
        bridge=bridge,
        attention=config.attention,
        attention_size=config.attention_size,
        feedback=config.decoder_feedback,
    )


def _fusion(name: str, sizes: list[Any]) -> tuple[list[Any], str | nn.Module]:
    if len(sizes) == 1:
        return list(sizes[0]), "concat"
    local, glob = sizes
    kinds = [[isinstance(s, LSTMState) for s in stack] for stack in sizes]
    if kinds[0] != kinds[1]:
        raise ConfigError(
            "model: the local and global encoders need the same number of layers and cell kinds "
            f"per layer to fuse their states; got local {local} and global {glob}"
        )
    if name in ("concat", "bridge"):
        return [_add(a, b) for a, b in zip(local, glob, strict=True)], "concat"
    if local != glob:
        raise ConfigError(
            f"model.fusion {name!r} combines states element-wise and needs equal sizes; got "
            f"local_sizes {local} and global_sizes {glob} "
            "(use concat or bridge for different sizes)"
        )
    if name in _MODULES:
        if name == "child-sum" and not all(kinds[0]):
            raise ConfigError(
                "model.fusion 'child-sum' gates LSTM cell states; every encoder "
                "layer must be an LSTM"
            )
        return list(local), _MODULES[name](2, list(local))
    return list(local), name


def _bridge(fused: list[Any], target: tuple[Any, ...]) -> StateBridge:
    if [isinstance(s, LSTMState) for s in fused] != [isinstance(s, LSTMState) for s in target]:
        raise ConfigError(
            f"model.decoder_cell/decoder_sizes: the decoder's state {list(target)} must have the "
            f"same layers and kinds (LSTM or not) as the fused state {fused}, so that a "
            "StateBridge can map one to the other"
        )
    return StateBridge(fused, list(target))


def _add(a: Any, b: Any) -> Any:
    return LSTMState(a.c + b.c, a.h + b.h) if isinstance(a, LSTMState) else a + b


def _h(size: Any) -> int:
    return int(size.h) if isinstance(size, LSTMState) else size  # sizes: ints in an LSTMState


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
