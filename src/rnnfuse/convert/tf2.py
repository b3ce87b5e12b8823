"""TF2 checkpoints and SavedModels without Keras metadata -> rnnfuse stacks.

:func:`stack_from_tf2` reads the Keras recurrent layers of what TF2 programs write by
default (``tf.train.Checkpoint``, ``save_weights`` in TF format, ``tf.saved_model.save``)
with :mod:`rnnfuse.convert.tf2_checkpoint` and converts them as
:func:`rnnfuse.stack_from_keras` does (which reads these paths too).

>>> stack = stack_from_tf2(
...     "tests/fixtures/legacy/tf2_checkpoint/ckpt-1", layer_names=["lstm", "gru"]
... )
>>> stack.hidden_sizes
(4, 3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .keras import _build, _expand_rnn, _select
from .tf2_checkpoint import ObjectCheckpoint, read_object_checkpoint, read_tf2_layers

__all__ = ["stack_from_tf2", "read_object_checkpoint", "ObjectCheckpoint"]


def stack_from_tf2(
    path: str | os.PathLike[str],
    *,
    layer_names: Sequence[str] | None = None,
    reset_after: bool | None = None,
    batch_first: bool = True,
) -> Any:
    """The stack of the Keras recurrent layers in a TF2 checkpoint or SavedModel directory.

    ``path``: a checkpoint prefix (what ``tf.train.Checkpoint.save`` returned, or the path
    given to ``save_weights``) or a SavedModel directory (``tf.saved_model.save``).
    ``layer_names`` picks the layers, bottom first (needed when the model also holds a layer
    that is not recurrent, such as a ``Dense`` head).  ``reset_after`` is needed only for a
    GRU without bias, whose weights do not tell it.  Returns what
    :func:`rnnfuse.stack_from_keras` returns for the same layers.
    """
    layers = _expand_rnn(read_tf2_layers(path, reset_after=reset_after, layer_names=layer_names))
    return _build(_select(layers, layer_names), batch_first)
