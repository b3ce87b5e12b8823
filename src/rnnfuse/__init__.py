"""rnnfuse: multi-layer recurrent encoders with per-layer sizes, typed states and fusion."""

from .cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from .encoders import MultiEncoder, MultiEncoderOutput, merge_directions
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
from .interop.keras import stack_from_keras
from .interop.tf1 import BidirectionalRNN
from .io import load, save
from .seq2seq import Seq2Seq
from .stack import StackedRNN
from .state import (
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
    "LSTMState",
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
    "merge_directions",
]
