"""TF1 checkpoints (``tf.train.Saver``, V2 bundle format), read without TensorFlow.

:func:`read_checkpoint` and :func:`list_variables` live in :mod:`.reader`; the LevelDB
table of the ``.index`` file is read by :mod:`.table`, its protobuf messages by
:mod:`.proto`, checksums by :mod:`.crc`.
"""

from .reader import (
    CheckpointError,
    VariableInfo,
    is_object_based,
    list_variables,
    read_checkpoint,
    read_object_bundle,
)

__all__ = [
    "CheckpointError",
    "VariableInfo",
    "list_variables",
    "read_checkpoint",
    "read_object_bundle",
    "is_object_based",
]
