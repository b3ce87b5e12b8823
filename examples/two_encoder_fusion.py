"""Seed program 2 of the TF1 post "TF多層 LSTM 以及 State 之間的融合", on rnnfuse.tf1.

Two encoders (encoder1, encoder2), each a MultiRNNCell of two GRUCells, read the same
[3, 5, 6] input; their outputs are concatenated on the feature axis and their states
layer by layer, keeping each layer's type (LSTMStateTuple for an LSTM, a tensor for a
GRU/RNN).  Ported by changing the imports (tf.* -> rnnfuse.tf1 and torch: tf.concat ->
torch.cat, tf.Tensor -> torch.Tensor) and dropping the session.  One bug of the original
is fixed: its loop built each layer's fused state but never appended it, so it returned
an empty tuple.  ``rnnfuse.concat_states`` does the same fusion in one call.

Run: python examples/two_encoder_fusion.py
"""

import torch

from rnnfuse import concat_states, tf1
from rnnfuse.state import structure_str


def concate_rnn_states(num_layers, encoder_state_local, encoder_state_global):
    """:param num_layers:
    :param encoder_state_local:
        for lstm: (LSTMStateTuple(c=, h=), LSTMStateTuple(c=, h=))
        for gru: (, )
    :param encoder_state_global: same as local
    :return: tuple
    """
    encoder_states = []
    for i in range(num_layers):
        if isinstance(encoder_state_local[i], tf1.LSTMStateTuple):
            # for lstm
            encoder_state_c = torch.cat(
                (encoder_state_local[i].c, encoder_state_global[i].c), dim=1
            )
            encoder_state_h = torch.cat(
                (encoder_state_local[i].h, encoder_state_global[i].h), dim=1
            )
            encoder_state = tf1.LSTMStateTuple(c=encoder_state_c, h=encoder_state_h)
        elif isinstance(encoder_state_local[i], torch.Tensor):
            # for gru and rnn
            encoder_state = torch.cat((encoder_state_local[i], encoder_state_global[i]), dim=1)
        encoder_states.append(encoder_state)  # the fix: the original never appended
    return tuple(encoder_states)


num_units = [20, 20]

# unit1
x = torch.randn(3, 5, 6)
x = torch.reshape(x, [-1, 5, 6])
with tf1.variable_scope("encoder1") as scope:
    local_multi_rnn = [tf1.GRUCell(num_units=units) for units in num_units]
    local_lstm_cells = tf1.MultiRNNCell(local_multi_rnn)
    encoder_output_local, encoder_state_local = tf1.dynamic_rnn(
        local_lstm_cells, x, time_major=False, dtype=torch.float32
    )
with tf1.variable_scope("encoder2") as scope:
    global_multi_rnn = [tf1.GRUCell(num_units=units) for units in num_units]
    global_lstm_cells = tf1.MultiRNNCell(global_multi_rnn)
    encoder_output_global, encoder_state_global = tf1.dynamic_rnn(
        global_lstm_cells, x, time_major=False, dtype=torch.float32
    )

print("concat output")
encoder_outputs = torch.cat([encoder_output_local, encoder_output_global], dim=-1)
print("encoder_output_local:", structure_str(encoder_output_local))
print("encoder_outputs:", structure_str(encoder_outputs))

print("concat state")
print("encoder_state_local:", structure_str(encoder_state_local))
print("encoder_state_global:", structure_str(encoder_state_global))
encoder_states = concate_rnn_states(2, encoder_state_local, encoder_state_global)
print("encoder_states:", structure_str(encoder_states))

fused = concat_states([encoder_state_local, encoder_state_global])
same = all(torch.equal(a, b) for a, b in zip(encoder_states, fused, strict=True))
print("same as rnnfuse.concat_states:", same)
print(
    "variables:",
    sorted(tf1.get_variables(local_lstm_cells))[0],
    "...",
    sorted(tf1.get_variables(global_lstm_cells))[-1],
)
