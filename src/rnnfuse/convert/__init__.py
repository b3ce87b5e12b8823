"""Converters between rnnfuse and other frameworks' recurrent layers.

:mod:`rnnfuse.convert.torch` (``torch.nn.LSTM``/``GRU``/``RNN``, used by
:meth:`StackedRNN.from_torch <rnnfuse.StackedRNN.from_torch>`), :mod:`rnnfuse.convert.keras`
(Keras 3, :func:`~rnnfuse.convert.keras.stack_from_keras`) and, for TensorFlow 1
checkpoints, :mod:`rnnfuse.tf1`.  Gate orders and checked parameter copies live once, in
``rnnfuse.convert._params``.  This package imports none of its modules, so importing one
converter never loads another.
"""

__all__: list[str] = []
