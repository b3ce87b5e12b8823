"""Deprecated: use :mod:`rnnfuse.tf1.checkpoint.table`, ``.proto`` and ``.crc``."""

from ..tf1.checkpoint.crc import crc32c, masked_crc32c
from ..tf1.checkpoint.proto import Fields, int_field, messages, packed_ints, parse_message
from ..tf1.checkpoint.table import BlockHandle, TableError, read_table, read_varint
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.tf1.checkpoint.table, .proto and .crc")

__all__ = ["TableError", "BlockHandle", "crc32c", "masked_crc32c", "read_varint", "read_table",
           "Fields", "parse_message", "int_field", "messages", "packed_ints"]
