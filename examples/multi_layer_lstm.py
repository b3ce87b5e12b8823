"""Seed program 1 of the TF1 post "TF多層 LSTM 以及 State 之間的融合", on rnnfuse.tf1.

A two-layer LSTM (MultiRNNCell of BasicLSTMCell) over a time-major [3, 5, 6] input.
Ported by changing the imports (tf.nn.rnn_cell / tf.contrib.rnn / tf.nn -> rnnfuse.tf1,
tf.random_normal / tf.reshape -> torch) and the session code: there is no graph, so the
values exist as soon as dynamic_rnn returns, and the variables are listed with
tf1.get_variables instead of tf.global_variables().

The post's active "unit3" builds MultiRNNCell([BasicLSTMCell(20)] * 2): one cell object
for both layers.  TF fails there (the second layer would reuse a kernel built for 6
inputs); rnnfuse refuses it with a ValueError that shows the fix, printed at the end.

Run: python examples/multi_layer_lstm.py
"""

import torch

from rnnfuse import tf1
from rnnfuse.state import structure_str

num_units = [20, 20]

# unit1, ok
x = torch.randn(3, 5, 6)
x = torch.reshape(x, [-1, 5, 6])
multi_rnn = [tf1.BasicLSTMCell(num_units=units) for units in num_units]
lstm_cells = tf1.MultiRNNCell(multi_rnn)
output, state = tf1.dynamic_rnn(lstm_cells, x, time_major=True, dtype=torch.float32)

print("output:", structure_str(output))
print("state:", structure_str(state))
for name, value in tf1.get_variables(lstm_cells).items():
    print(name, list(value.shape))

# unit3 *********error*********** (one cell object for two layers)
try:
    lstm_cells = tf1.MultiRNNCell([tf1.BasicLSTMCell(num_units=20)] * 2)
except ValueError as error:
    print("unit3 error:", error)
