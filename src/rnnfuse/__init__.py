"""rnnfuse: multi-layer recurrent encoders with per-layer sizes, typed states and fusion.

The core is imported here; the interop layers load when first used: ``rnnfuse.tf1`` (the
TF1 facade and checkpoint reader) and ``rnnfuse.stack_from_keras`` (Keras 3 import).
"""

from __future__ import annotations

import importlib
from typing import Any

from .bidirectional import BidirectionalRNN
from .cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from .encoders import MultiEncoder, MultiEncoderOutput
from .fusion import (
    ChildSumFusion,
    GatedFusion,
    StateBridge,
    ZophKnightFusion,
    concat_outputs,
    concat_states,
    max_states,
    mean_states,
    sum_states,
)
from .io import load, save
from .seq2seq import Seq2Seq
from .stack import StackedRNN
from .state import (
    BidirectionalState,
    LSTMState,
    assert_same_structure,
    flatten_state,
    from_keras_layout,
    from_torch_layout,
    map_state,
    state_sizes,
    structure_str,
    to_keras_layout,
    to_torch_layout,
    zeros_like_state,
)

__version__ = "0.1.0"

_LAZY = {
    "tf1": ("rnnfuse.tf1", None),
    "stack_from_keras": ("rnnfuse.convert.keras", "stack_from_keras"),
    "stacks_from_keras": ("rnnfuse.convert.keras", "stacks_from_keras"),
}

__all__ = [
    "LSTMCell",
    "GRUCell",
    "RNNCell",
    "RecurrentCell",
    "StackedRNN",
    "BidirectionalRNN",
    "save",
    "load",
    "stack_from_keras",
    "stacks_from_keras",
    "LSTMState",
    "BidirectionalState",
    "map_state",
    "flatten_state",
    "structure_str",
    "assert_same_structure",
    "zeros_like_state",
    "state_sizes",
    "to_torch_layout",
    "from_torch_layout",
    "to_keras_layout",
    "from_keras_layout",
    "concat_states",
    "sum_states",
    "mean_states",
    "max_states",
    "concat_outputs",
    "StateBridge",
    "ZophKnightFusion",
    "ChildSumFusion",
    "GatedFusion",
    "MultiEncoder",
    "MultiEncoderOutput",
    "Seq2Seq",
]


def __getattr__(name: str) -> Any:
    """Load ``tf1`` and ``stack_from_keras`` on first use (PEP 562), keeping the import light."""
    if name not in _LAZY:
        raise AttributeError(f"module 'rnnfuse' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
