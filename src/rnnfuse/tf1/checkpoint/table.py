"""The LevelDB table format of a TF1 checkpoint's ``.index`` file, read by hand.

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

from typing import NamedTuple

from .crc import masked_crc32c

__all__ = [
    "TableError",
    "BlockHandle",
    "FOOTER_SIZE",
    "TABLE_MAGIC",
    "read_varint",
    "decode_handle",
    "read_footer",
    "read_block",
    "iter_block",
    "read_table",
]

FOOTER_SIZE = 48
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1


class TableError(Exception):
    """A malformed table; the message says what is wrong, not which file."""


class BlockHandle(NamedTuple):
    offset: int
    size: int


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
                raise TableError(
                    f"varint at byte {pos - i - 1} overflows {limit.bit_length() - 1} bits"
                )
            return result, pos
    raise TableError(f"varint at byte {pos - max_bytes} is longer than {max_bytes} bytes")


def _u32(buf: bytes, pos: int) -> int:
    if pos < 0 or pos + 4 > len(buf):
        raise TableError(f"uint32 at byte {pos} lies outside {len(buf)} bytes")
    return int.from_bytes(buf[pos : pos + 4], "little")


# --------------------------------------------------------------- blocks ---


def decode_handle(buf: bytes, pos: int = 0, end: int | None = None) -> tuple[BlockHandle, int]:
    end = len(buf) if end is None else end
    offset, pos = read_varint(buf, pos, end)
    size, pos = read_varint(buf, pos, end)
    return BlockHandle(offset, size), pos


def read_footer(data: bytes) -> tuple[BlockHandle, BlockHandle]:
    """Return the (metaindex, index) handles of the footer."""
    if len(data) < FOOTER_SIZE:
        raise TableError(
            f"file has {len(data)} bytes, fewer than the {FOOTER_SIZE}-byte table footer"
        )
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
            f"trailer) runs past the data area of {limit} bytes"
        )
    end = handle.offset + handle.size
    contents = data[handle.offset : end]
    kind = data[end]
    stored = _u32(data, end + 1)
    actual = masked_crc32c(data[handle.offset : end + 1])
    if stored != actual:
        raise TableError(
            f"{what} at offset {handle.offset}: checksum mismatch "
            f"(stored {stored:#010x}, computed {actual:#010x})"
        )
    if kind == SNAPPY_COMPRESSION:
        raise TableError(
            f"{what} at offset {handle.offset} is snappy-compressed; only "
            "uncompressed tables are supported (TensorFlow writes checkpoint "
            "indexes uncompressed)"
        )
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


def _read_entry(
    block: bytes, pos: int, end: int, prev_key: bytes, what: str
) -> tuple[bytes, bytes, int]:
    shared, pos = read_varint(block, pos, end, 5)
    non_shared, pos = read_varint(block, pos, end, 5)
    value_len, pos = read_varint(block, pos, end, 5)
    if shared > len(prev_key):
        raise TableError(f"{what}: entry shares {shared} bytes with a {len(prev_key)}-byte key")
    if non_shared > end - pos or value_len > end - pos - non_shared:
        raise TableError(f"{what}: entry at byte {pos} runs past the end of the entries")
    key = prev_key[:shared] + block[pos : pos + non_shared]
    pos += non_shared
    return key, block[pos : pos + value_len], pos + value_len


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
            raise TableError(
                f"keys out of order or repeated at entry {i}: "
                f"{entries[i - 1][0][:60]!r} then {entries[i][0][:60]!r}"
            )
