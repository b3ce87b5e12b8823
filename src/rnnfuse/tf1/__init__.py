"""A TensorFlow 1 style facade: TF1 RNN code runs on rnnfuse with its imports changed.

Cells are ``nn.Module`` s that build their rnnfuse cell at the first call, when the input
size is known (as TF builds its variables), with TF's initialisers (Glorot-uniform
kernels, zero biases, ``gates/bias`` of a GRU at 1.0).  ``dynamic_rnn`` and
``bidirectional_dynamic_rnn`` return what TF returns: ``(outputs, state)`` with an
:data:`LSTMStateTuple` for an LSTM, a tensor for a GRU/RNN and a tuple per layer for a
:class:`MultiRNNCell`.  :func:`restore` loads a TF1 checkpoint into such a model, strictly.

>>> import torch
>>> from rnnfuse import tf1
>>> cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(num_units=n) for n in (20, 20)])
>>> output, state = tf1.dynamic_rnn(cells, torch.randn(3, 5, 6), time_major=True)
>>> tuple(output.shape), tuple(state[1].h.shape)
((3, 5, 20), (5, 20))
>>> sorted(tf1.get_variables(cells))[0]
'rnn/multi_rnn_cell/cell_0/basic_lstm_cell/bias'

Differences from TF: a cell object owns one set of weights, so running one cell under two
scopes is refused (TF would create a second set); ``parallel_iterations`` and
``swap_memory`` are accepted and have no effect (they do not change TF's numbers either).
A cell's ``activation`` is a name of :mod:`rnnfuse.cells.activations` or its torch
function; other than tanh the layer runs on the reference loop.
"""

from ..bidirectional import BidirectionalRNN
from ..state import LSTMState as LSTMStateTuple
from .cells import BasicLSTMCell, BasicRNNCell, GRUCell, LSTMCell, MultiRNNCell, variable_scope
from .checkpoint import CheckpointError, read_checkpoint
from .convert import TF1VariableError, load_stack
from .run import as_stack, bidirectional_dynamic_rnn, dynamic_rnn, get_variables, restore
from .static import stack_bidirectional_dynamic_rnn, static_bidirectional_rnn, static_rnn
from .wrappers import DropoutWrapper, ResidualWrapper

__all__ = [
    "BasicLSTMCell",
    "LSTMCell",
    "GRUCell",
    "BasicRNNCell",
    "MultiRNNCell",
    "LSTMStateTuple",
    "dynamic_rnn",
    "bidirectional_dynamic_rnn",
    "variable_scope",
    "restore",
    "get_variables",
    "as_stack",
    "load_stack",
    "read_checkpoint",
    "CheckpointError",
    "TF1VariableError",
    "BidirectionalRNN",
    "ResidualWrapper",
    "DropoutWrapper",
    "static_rnn",
    "static_bidirectional_rnn",
    "stack_bidirectional_dynamic_rnn",
]
