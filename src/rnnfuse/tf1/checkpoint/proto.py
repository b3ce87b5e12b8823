"""Just enough protobuf for a TF1 bundle: the wire format, BundleHeaderProto, BundleEntryProto.

``BundleHeaderProto``: num_shards=1, endianness=2, version=3 (a VersionDef: producer=1,
min_consumer=2, bad_consumers=3).  ``BundleEntryProto``: dtype=1, shape=2 (a
TensorShapeProto: dim=2 with size=1, unknown_rank=3), shard_id=3, offset=4, size=5,
crc32c=6 (fixed32), slices=7 (TensorSliceProto: extent=1 with start=1, length=2).
Decoding is by hand, from bytes, with every length checked; errors are
:class:`~rnnfuse.tf1.checkpoint.table.TableError`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .table import TableError, read_varint

__all__ = [
    "Fields",
    "parse_message",
    "int_field",
    "messages",
    "packed_ints",
    "BundleEntry",
    "DTYPES",
    "DT_BFLOAT16",
    "check_header",
    "parse_entry",
    "entry_dtype",
]

_U64 = 1 << 64

# ------------------------------------------------------------- wire format ---

Fields = dict[int, list[tuple[int, "int | bytes"]]]


def parse_message(buf: bytes) -> Fields:
    """Decode one protobuf message into ``{field: [(wire_type, value), ...]}``."""
    fields: Fields = {}
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise TableError("protobuf field number 0")
        value: int | bytes
        if wire == 0:
            value, pos = read_varint(buf, pos, end)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if end - pos < width:
                raise TableError(f"truncated fixed{width * 8} protobuf field {number}")
            value, pos = int.from_bytes(buf[pos : pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = read_varint(buf, pos, end)
            if length > end - pos:
                raise TableError(f"protobuf field {number} of {length} bytes overruns its message")
            value, pos = buf[pos : pos + length], pos + length
        else:
            raise TableError(f"unsupported protobuf wire type {wire} in field {number}")
        fields.setdefault(number, []).append((wire, value))
    return fields


def int_field(fields: Fields, number: int, signed: bool = True, wire: int = 0) -> int:
    """The last value of a scalar field (proto3 semantics), 0 when absent."""
    values = fields.get(number, [])
    if not values:
        return 0
    got_wire, value = values[-1]
    if got_wire != wire or not isinstance(value, int):
        raise TableError(f"protobuf field {number} has wire type {got_wire}, expected {wire}")
    return value - _U64 if signed and value >= 1 << 63 else value


def messages(fields: Fields, number: int) -> list[Fields]:
    out = []
    for wire, value in fields.get(number, []):
        if wire != 2 or not isinstance(value, bytes):
            raise TableError(f"protobuf field {number} should be a message, has wire type {wire}")
        out.append(parse_message(value))
    return out


def packed_ints(fields: Fields, number: int) -> list[int]:
    out = []
    for wire, value in fields.get(number, []):
        if isinstance(value, bytes):
            pos = 0
            while pos < len(value):
                item, pos = read_varint(value, pos, len(value))
                out.append(item)
        elif wire == 0:
            out.append(value)
    return out


# ------------------------------------------------------- bundle protos ---

# TensorFlow DataType enum (types.proto) -> NumPy dtype, little-endian.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    8: np.dtype("<c8"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    14: np.dtype("<u2"),
    17: np.dtype("<u2"),
    18: np.dtype("<c16"),
    19: np.dtype("<f2"),
    22: np.dtype("<u4"),
    23: np.dtype("<u8"),
}
DT_BFLOAT16 = 14
_UNSUPPORTED = {
    7: "string",
    11: "qint8",
    12: "quint8",
    13: "qint32",
    15: "qint16",
    16: "quint16",
    20: "resource",
    21: "variant",
}
_BIG_ENDIAN = 1
_READER_VERSION = 1  # TensorFlow's kTensorBundleVersion


class BundleEntry(NamedTuple):
    """A decoded BundleEntryProto: where a tensor's bytes are and what they hold."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    slices: tuple[tuple[tuple[int, int], ...], ...]  # per slice, (start, length) per dim


def check_header(value: bytes) -> int:
    """Validate a BundleHeaderProto; return num_shards."""
    fields = parse_message(value)
    num_shards = int_field(fields, 1)
    if int_field(fields, 2) == _BIG_ENDIAN:
        raise TableError("the checkpoint was written big-endian; only little-endian is supported")
    versions = messages(fields, 3)
    version = versions[-1] if versions else {}
    min_consumer = int_field(version, 2)
    if min_consumer > _READER_VERSION or _READER_VERSION in packed_ints(version, 3):
        raise TableError(
            f"bundle version (producer {int_field(version, 1)}, min_consumer "
            f"{min_consumer}) is not readable by a version-{_READER_VERSION} reader"
        )
    if not 1 <= num_shards < 1 << 31:
        raise TableError(f"header says num_shards={num_shards}, expected at least 1")
    return num_shards


def _shape(fields: Fields, name: str) -> tuple[int, ...]:
    shapes = messages(fields, 2)
    shape = shapes[-1] if shapes else {}
    if int_field(shape, 3):
        raise TableError(f"tensor {name!r} has unknown rank")
    dims = tuple(int_field(dim, 1) for dim in messages(shape, 2))
    if any(d < 0 for d in dims):
        raise TableError(f"tensor {name!r} has a negative or unknown dimension: {list(dims)}")
    return dims


def _slice(fields: Fields, shape: tuple[int, ...], name: str) -> tuple[tuple[int, int], ...]:
    """A TensorSliceProto as ``(start, length)`` pairs, length -1 for a full extent."""
    extents = messages(fields, 1)
    if len(extents) != len(shape):
        raise TableError(
            f"tensor {name!r}: a slice has {len(extents)} extents for rank {len(shape)}"
        )
    out = []
    for extent, dim in zip(extents, shape, strict=True):
        start = int_field(extent, 1)
        length = int_field(extent, 2) if 2 in extent else -1
        if (start, length) == (0, -1):
            out.append((start, length))
            continue
        if start < 0 or length < 0 or start + length > dim:
            raise TableError(
                f"tensor {name!r}: slice extent start={start} length={length} "
                f"does not fit dimension {dim}"
            )
        out.append((start, length))
    return tuple(out)


def parse_entry(name: str, value: bytes) -> BundleEntry:
    """Decode and sanity-check one BundleEntryProto."""
    fields = parse_message(value)
    shape = _shape(fields, name)
    offset, size = int_field(fields, 4), int_field(fields, 5)
    if offset < 0 or size < 0:
        raise TableError(f"tensor {name!r} has negative offset {offset} or size {size}")
    slices = tuple(_slice(s, shape, name) for s in messages(fields, 7))
    return BundleEntry(
        name,
        int_field(fields, 1),
        shape,
        int_field(fields, 3),
        offset,
        size,
        int_field(fields, 6, signed=False, wire=5),
        slices,
    )


def entry_dtype(entry: BundleEntry) -> np.dtype:
    """The NumPy dtype of the stored bytes; ``TableError`` for an unsupported dtype."""
    if entry.dtype in DTYPES:
        return DTYPES[entry.dtype]
    kind = _UNSUPPORTED.get(entry.dtype, "unknown")
    raise TableError(f"tensor {entry.name!r} has unsupported dtype {entry.dtype} ({kind})")
