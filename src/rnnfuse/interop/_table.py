"""Low-level pieces of the TF1 checkpoint index: varints, CRC32C, LevelDB tables, protobuf.

The ``.index`` file of a TF1 (V2-format) checkpoint is a LevelDB-format table,
written by TensorFlow's ``table::TableBuilder`` without compression:

* a 48-byte footer: two block handles (metaindex, index), each two varint64s
  (offset, size), zero-padded to 40 bytes, then the little-endian fixed64 magic
  ``0xdb4775248b80fb57``;
* blocks, each followed by a 5-byte trailer: one compression-type byte (0 = none,
  1 = snappy) and the masked CRC32C of the block contents plus that type byte;
* inside a block, entries ``varint32 shared, varint32 non_shared,
  varint32 value_length, key[shared:], value`` (keys are prefix-compressed
  against the previous key), then an array of little-endian uint32 restart
  offsets (entries stored with ``shared == 0``), then the uint32 restart count;
* the index block maps a separator key to the handle of each data block.

Every function here raises :class:`TableError` (never ``IndexError`` and the
like) on malformed input; every offset and length is checked before slicing.
The caller turns it into a ``CheckpointError`` that names the file.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

__all__ = [
    "TableError",
    "BlockHandle",
    "crc32c",
    "masked_crc32c",
    "read_varint",
    "read_table",
    "Fields",
    "parse_message",
    "int_field",
    "messages",
    "packed_ints",
]

FOOTER_SIZE = 48
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_U64 = 1 << 64


class TableError(Exception):
    """A malformed table; the message says what is wrong, not which file."""


class BlockHandle(NamedTuple):
    offset: int
    size: int


# ---------------------------------------------------------------- CRC32C ---


def _make_crc_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, bit-reflected
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()
_CRC_TABLE_NP = np.asarray(_CRC_TABLE, dtype=np.uint32)
_VECTOR_MIN = 1 << 16  # below this, the plain loop is as fast


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc``.

    Short inputs use a table-driven loop; long ones split into equal lanes that
    NumPy runs side by side, then join the lane CRCs (see :func:`_vector_update`).
    """
    data = bytes(data)
    register = crc ^ _U32
    done = 0
    if len(data) >= _VECTOR_MIN:
        register, done = _vector_update(register, data)
    return _loop_update(register, data[done:]) ^ _U32


def _loop_update(register: int, data: bytes) -> int:
    table = _CRC_TABLE
    for byte in data:
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


@functools.cache
def _zeros_matrix(log2_bytes: int) -> tuple[int, ...]:
    """Columns of the GF(2) matrix that feeds ``2**log2_bytes`` zero bytes to a register."""
    if log2_bytes == 0:
        return tuple(_loop_update(1 << bit, b"\0") for bit in range(32))
    half = _zeros_matrix(log2_bytes - 1)
    return tuple(_apply(half, column) for column in half)


def _shift_matrix(nbytes: int) -> tuple[int, ...]:
    """The matrix for ``nbytes`` zero bytes: a product of cached powers of two."""
    result = tuple(1 << bit for bit in range(32))
    for k in range(nbytes.bit_length()):
        if nbytes >> k & 1:
            result = tuple(_apply(_zeros_matrix(k), column) for column in result)
    return result


def _apply(matrix: tuple[int, ...], register: int) -> int:
    out = 0
    for bit in range(32):
        if register >> bit & 1:
            out ^= matrix[bit]
    return out


def _byte_tables(matrix: tuple[int, ...]) -> np.ndarray:
    """``matrix`` as four 256-entry tables, one per byte of the register."""
    values = np.arange(256, dtype=np.uint32)
    tables = np.zeros((4, 256), np.uint32)
    for k in range(4):
        for b in range(8):
            tables[k] ^= ((values >> np.uint32(b)) & np.uint32(1)) * np.uint32(matrix[8 * k + b])
    return tables


def _apply_tables(tables: np.ndarray, registers: np.ndarray) -> np.ndarray:
    out = tables[0].take(registers & 0xFF)
    for k in range(1, 4):
        out ^= tables[k].take((registers >> np.uint32(8 * k)) & 0xFF)
    return out


def _vector_update(register: int, data: bytes) -> tuple[int, int]:
    """Run equal, contiguous lanes of ``data`` side by side; return (register, bytes done).

    CRC registers are linear: ``R(s, A + B) = Z_len(B)(R(s, A)) ^ R(0, B)``
    where ``Z_n`` feeds ``n`` zero bytes.  Each lane starts from 0; pairs of
    neighbouring lanes are then joined with ``Z`` for the lane length, halving
    the count each round; the incoming register is shifted past it all.
    """
    lanes = 1 << max(8, (len(data) // 1024).bit_length() - 1)
    length = len(data) // lanes
    grid = np.frombuffer(data, np.uint8, lanes * length).reshape(lanes, length)
    regs = np.zeros(lanes, np.uint32)
    for j in range(length):
        index = regs ^ grid[:, j]
        index &= 0xFF
        regs >>= np.uint32(8)
        regs ^= _CRC_TABLE_NP.take(index)
    shift = _shift_matrix(length)
    while len(regs) > 1:
        regs = _apply_tables(_byte_tables(shift), regs[0::2]) ^ regs[1::2]
        shift = tuple(_apply(shift, column) for column in shift)  # twice the length
    done = lanes * length
    for k in range(done.bit_length()):
        if done >> k & 1:
            register = _apply(_zeros_matrix(k), register)
    return register ^ int(regs[0]), done


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The masked CRC32C that LevelDB and TensorFlow store on disk."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & _U32


# -------------------------------------------------------------- varints ---


def read_varint(buf: bytes, pos: int, end: int, max_bytes: int = 10) -> tuple[int, int]:
    """Decode a base-128 varint at ``buf[pos:end]``; return ``(value, new_pos)``.

    At most ``max_bytes`` bytes are read (5 for a varint32, 10 for a varint64),
    and the value must fit in ``7 * max_bytes`` bits capped at 32 or 64 bits.
    """
    limit = 1 << (32 if max_bytes <= 5 else 64)
    end = min(end, len(buf))
    result = 0
    for i in range(max_bytes):
        if pos >= end:
            raise TableError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            if result >= limit:
                raise TableError(f"varint at byte {pos - i - 1} overflows {limit.bit_length() - 1} bits")
            return result, pos
    raise TableError(f"varint at byte {pos - max_bytes} is longer than {max_bytes} bytes")


def _u32(buf: bytes, pos: int) -> int:
    if pos < 0 or pos + 4 > len(buf):
        raise TableError(f"uint32 at byte {pos} lies outside {len(buf)} bytes")
    return int.from_bytes(buf[pos:pos + 4], "little")


# --------------------------------------------------------------- blocks ---


def decode_handle(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[BlockHandle, int]:
    end = len(buf) if end is None else end
    offset, pos = read_varint(buf, pos, end)
    size, pos = read_varint(buf, pos, end)
    return BlockHandle(offset, size), pos


def read_footer(data: bytes) -> tuple[BlockHandle, BlockHandle]:
    """Return the (metaindex, index) handles of the footer."""
    if len(data) < FOOTER_SIZE:
        raise TableError(f"file has {len(data)} bytes, fewer than the {FOOTER_SIZE}-byte table footer")
    footer_start = len(data) - FOOTER_SIZE
    magic = int.from_bytes(data[-8:], "little")
    if magic != TABLE_MAGIC:
        raise TableError(f"bad table magic number: expected {TABLE_MAGIC:#x}, got {magic:#x}")
    handles_end = len(data) - 8
    metaindex, pos = decode_handle(data, footer_start, handles_end)
    index, _ = decode_handle(data, pos, handles_end)
    return metaindex, index


def read_block(data: bytes, handle: BlockHandle, what: str) -> bytes:
    """Return the checked, uncompressed contents of the block at ``handle``."""
    limit = len(data) - FOOTER_SIZE
    if handle.offset > limit or handle.size > limit - handle.offset - BLOCK_TRAILER_SIZE:
        raise TableError(
            f"{what} at offset {handle.offset} with size {handle.size} (+{BLOCK_TRAILER_SIZE}-byte "
            f"trailer) runs past the data area of {limit} bytes")
    end = handle.offset + handle.size
    contents = data[handle.offset:end]
    kind = data[end]
    stored = _u32(data, end + 1)
    actual = masked_crc32c(data[handle.offset:end + 1])
    if stored != actual:
        raise TableError(f"{what} at offset {handle.offset}: checksum mismatch "
                         f"(stored {stored:#010x}, computed {actual:#010x})")
    if kind == SNAPPY_COMPRESSION:
        raise TableError(f"{what} at offset {handle.offset} is snappy-compressed; only "
                         "uncompressed tables are supported (TensorFlow writes checkpoint "
                         "indexes uncompressed)")
    if kind != NO_COMPRESSION:
        raise TableError(f"{what} at offset {handle.offset} has unknown compression type {kind}")
    return contents


def _restart_offsets(block: bytes, what: str) -> tuple[int, list[int]]:
    """Return ``(entries_end, restarts)`` of a block."""
    if len(block) < 4:
        raise TableError(f"{what} has {len(block)} bytes, too few for a restart count")
    count = _u32(block, len(block) - 4)
    if count > (len(block) - 4) // 4:
        raise TableError(f"{what} claims {count} restart points but has only {len(block)} bytes")
    entries_end = len(block) - 4 - 4 * count
    restarts = [_u32(block, entries_end + 4 * i) for i in range(count)]
    return entries_end, restarts


def _read_entry(block: bytes, pos: int, end: int, prev_key: bytes,
                what: str) -> tuple[bytes, bytes, int]:
    shared, pos = read_varint(block, pos, end, 5)
    non_shared, pos = read_varint(block, pos, end, 5)
    value_len, pos = read_varint(block, pos, end, 5)
    if shared > len(prev_key):
        raise TableError(f"{what}: entry shares {shared} bytes with a {len(prev_key)}-byte key")
    if non_shared > end - pos or value_len > end - pos - non_shared:
        raise TableError(f"{what}: entry at byte {pos} runs past the end of the entries")
    key = prev_key[:shared] + block[pos:pos + non_shared]
    pos += non_shared
    return key, block[pos:pos + value_len], pos + value_len


def iter_block(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Decode all (key, value) entries of a block, checking its restart points."""
    end, restarts = _restart_offsets(block, what)
    entries: list[tuple[bytes, bytes]] = []
    fresh_starts: set[int] = set()  # entries stored with shared == 0
    pos, key = 0, b""
    while pos < end:
        start = pos
        key, value, pos = _read_entry(block, pos, end, key, what)
        if block[start] == 0:
            fresh_starts.add(start)
        entries.append((key, value))
    if entries and (not restarts or restarts[0] != 0):
        raise TableError(f"{what}: first restart point is not at byte 0")
    bad = [r for r in restarts if r not in fresh_starts and not (r == 0 and not entries)]
    if bad:
        raise TableError(f"{what}: restart point(s) {bad[:3]} do not start a full key")
    return entries


# ---------------------------------------------------------------- table ---


def read_table(data: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) pairs of an uncompressed LevelDB table, in key order."""
    metaindex_handle, index_handle = read_footer(data)
    iter_block(read_block(data, metaindex_handle, "metaindex block"), "metaindex block")
    index = iter_block(read_block(data, index_handle, "index block"), "index block")
    entries: list[tuple[bytes, bytes]] = []
    for number, (separator, encoded) in enumerate(index):
        handle, used = decode_handle(encoded)
        if used != len(encoded):
            raise TableError(f"index entry {number} holds {len(encoded) - used} stray bytes")
        what = f"data block {number}"
        block = iter_block(read_block(data, handle, what), what)
        if block and block[-1][0] > separator:
            raise TableError(f"{what}: last key sorts after the index separator key")
        entries.extend(block)
    _check_sorted(entries)
    return entries


def _check_sorted(entries: list[tuple[bytes, bytes]]) -> None:
    for i in range(1, len(entries)):
        if entries[i - 1][0] >= entries[i][0]:
            raise TableError(f"keys out of order or repeated at entry {i}: "
                             f"{entries[i - 1][0][:60]!r} then {entries[i][0][:60]!r}")


# ------------------------------------------------------------- protobuf ---
# Just enough of the protobuf wire format for BundleHeaderProto/BundleEntryProto.

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
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = read_varint(buf, pos, end)
            if length > end - pos:
                raise TableError(f"protobuf field {number} of {length} bytes overruns its message")
            value, pos = buf[pos:pos + length], pos + length
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
