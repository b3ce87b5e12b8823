"""Read TensorFlow 1 checkpoints (``tf.train.Saver``, V2 format) without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index`` plus one or more data shards
``PREFIX.data-SSSSS-of-NNNNN``.  The index is a LevelDB-format table (parsed
in :mod:`rnnfuse.tf1.checkpoint.table`) whose key ``""`` holds a
``BundleHeaderProto`` and whose other keys are tensor names, each mapped to a
``BundleEntryProto`` saying where the tensor's bytes are (decoded by hand in
:mod:`rnnfuse.tf1.checkpoint.proto`).  This module checks every checksum and bound, and
returns NumPy arrays.  It needs NumPy and google-crc32c: no TensorFlow, no protobuf, no
pickle.

Supported dtypes: float16/32/64, bfloat16 (returned as float32), int8/16/32/64,
uint8/16/32/64, bool, complex64/128.  Partitioned variables (saved as slices)
are reassembled.  Strings, resources and variants are rejected, as are
big-endian bundles and snappy-compressed index blocks.

Whatever the input, the only exception raised is :class:`CheckpointError`,
whose message names the file and says what is wrong.

Example::

    >>> from rnnfuse.tf1.checkpoint import list_variables, read_checkpoint
    >>> for name, dtype, shape in list_variables("run/model.ckpt-1000"):  # doctest: +SKIP
    ...     print(name, dtype, shape)
    rnn/basic_lstm_cell/bias float32 (32,)
    rnn/basic_lstm_cell/kernel float32 (12, 32)
    >>> weights = read_checkpoint("run/model.ckpt-1000")  # doctest: +SKIP
    >>> weights["rnn/basic_lstm_cell/kernel"].shape  # doctest: +SKIP
    (12, 32)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from ..._files import GIB, NotRegularFileError, check_regular_file
from .crc import crc32c, mask_crc, masked_crc32c
from .proto import DT_BFLOAT16, DTYPES, BundleEntry, check_header, entry_dtype, parse_entry
from .table import TableError, read_table, read_varint

__all__ = [
    "CheckpointError",
    "VariableInfo",
    "list_variables",
    "read_checkpoint",
    "read_object_bundle",
    "is_object_based",
    "OBJECT_BASED",
]


MAX_INDEX_BYTES = GIB  # a .index file holds names and offsets, never tensor data


class CheckpointError(Exception):
    """A checkpoint could not be read: missing file, bad format, unsupported content."""


class VariableInfo(NamedTuple):
    """One saved variable: its name, the dtype and shape ``read_checkpoint`` returns."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]


# -------------------------------------------------------------- slices ---


def _ordered_signed(value: int) -> bytes:
    """TensorFlow's OrderedCode encoding of a signed int64 (WriteSignedNumIncreasing).

    ``n`` bytes hold ``[-2**(7n-1), 2**(7n-1))``: the big-endian two's
    complement value whose leading bits are flipped to announce the length.
    """
    magnitude = ~value if value < 0 else value
    length = min(magnitude.bit_length() // 7 + 1, 10)
    raw = bytearray((value % (1 << (8 * length))).to_bytes(length, "big"))
    header = (0xFFFF << (16 - length)) & 0xFFFF  # `length` leading one bits
    raw[0] ^= header >> 8
    if length > 1:
        raw[1] ^= header & 0xFF
    return bytes(raw)


def _ordered_unsigned(value: int) -> bytes:
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return bytes([len(body)]) + body


def _slice_key(name: str, extents: tuple[tuple[int, int], ...]) -> bytes:
    """The index key of one slice of a partitioned variable (EncodeTensorNameSlice)."""
    escapes = {0x00: b"\x00\xff", 0xFF: b"\xff\x00"}
    escaped = b"".join(escapes.get(byte, bytes([byte])) for byte in name.encode("utf-8"))
    key = bytearray(_ordered_unsigned(0) + escaped + b"\x00\x01" + _ordered_unsigned(len(extents)))
    for start, length in extents:
        key += _ordered_signed(start) + _ordered_signed(length)
    return bytes(key)


# --------------------------------------------------------------- index ---


class _Index(NamedTuple):
    path: Path
    num_shards: int
    entries: dict[str, BundleEntry]  # variables, in key order
    slices: dict[bytes, BundleEntry]  # slice entries by raw key


def _decode_name(key: bytes) -> str:
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TableError(f"tensor name {key[:60]!r} is not valid UTF-8") from exc


def _load_index(prefix: Path, strings: dict[str, BundleEntry] | None = None) -> _Index:
    path = prefix.with_name(prefix.name + ".index")
    try:
        check_regular_file(path, "a checkpoint index", MAX_INDEX_BYTES)
        data = path.read_bytes()
    except NotRegularFileError as exc:
        raise CheckpointError(str(exc)) from None
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint index ({exc.strerror or exc})"
        ) from exc
    try:
        return _parse_index(path, read_table(data), strings)
    except TableError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def _parse_index(
    path: Path, table: list[tuple[bytes, bytes]], strings: dict[str, BundleEntry] | None = None
) -> _Index:
    """The index; with ``strings`` (a dict to fill), scalar string tensors go there
    instead of being refused."""
    if not table or table[0][0] != b"":
        raise TableError("no bundle header (empty key) in the index")
    num_shards = check_header(table[0][1])
    entries: dict[str, BundleEntry] = {}
    slices: dict[bytes, BundleEntry] = {}
    for key, value in table[1:]:
        if key.startswith(b"\x00"):
            slices[key] = parse_entry(repr(key), value)
            continue
        entry = parse_entry(_decode_name(key), value)
        if strings is not None and entry.dtype == _DT_STRING and not entry.slices:
            if entry.shape != () or not 0 <= entry.shard_id < num_shards:
                raise TableError(
                    f"string tensor {entry.name!r}: expected a scalar in a listed "
                    f"shard, got shape {list(entry.shape)} in shard {entry.shard_id}"
                )
            strings[entry.name] = entry
            continue
        if entry.dtype == _DT_STRING and entry.name == _OBJECT_GRAPH:
            raise TableError(OBJECT_BASED)
        entry_dtype(entry)
        if not entry.slices:
            _check_part(entry, num_shards)
        entries[entry.name] = entry
    return _Index(path, num_shards, entries, slices)


def _check_part(entry: BundleEntry, num_shards: int) -> None:
    """Check shard id and that ``size`` matches dtype and shape."""
    if not 0 <= entry.shard_id < num_shards:
        raise TableError(
            f"tensor {entry.name!r} is in shard {entry.shard_id}, "
            f"but the header says num_shards={num_shards}"
        )
    expected = math.prod(entry.shape) * entry_dtype(entry).itemsize
    if entry.size != expected:
        raise TableError(
            f"tensor {entry.name!r} of shape {list(entry.shape)} needs "
            f"{expected} bytes, the index says {entry.size}"
        )


# -------------------------------------------------------------- shards ---


class _Shards:
    """Open data shards lazily; read tensor bytes with bounds and CRC checks."""

    def __init__(self, prefix: Path, num_shards: int) -> None:
        self.prefix, self.num_shards = prefix, num_shards
        self.files: dict[int, tuple[Path, BinaryIO, int]] = {}

    def __enter__(self) -> _Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        for _, handle, _ in self.files.values():
            handle.close()

    def _open(self, shard: int) -> tuple[Path, BinaryIO, int]:
        if shard not in self.files:
            name = f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}"
            path = self.prefix.with_name(name)
            try:
                check_regular_file(path, f"data shard {shard}")
                handle = path.open("rb")
            except NotRegularFileError as exc:
                raise CheckpointError(str(exc)) from None
            except OSError as exc:
                raise CheckpointError(
                    f"{path}: cannot open data shard {shard} ({exc.strerror or exc})"
                ) from exc
            self.files[shard] = (path, handle, os.fstat(handle.fileno()).st_size)
        return self.files[shard]

    def read(self, entry: BundleEntry, check: bool = True) -> tuple[bytes, Path]:
        """The checked bytes of a tensor, and the shard file they came from (``check=False``:
        the caller checks the CRC, as for strings, whose CRC is not over the bytes as stored)."""
        path, handle, file_size = self._open(entry.shard_id)
        if entry.offset > file_size or entry.size > file_size - entry.offset:
            raise CheckpointError(
                f"{path}: tensor {entry.name!r} at offset {entry.offset} with "
                f"{entry.size} bytes runs past the end of the file ({file_size} bytes)"
            )
        try:
            handle.seek(entry.offset)
            data = handle.read(entry.size)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read tensor {entry.name!r} ({exc})") from exc
        if len(data) != entry.size:
            raise CheckpointError(f"{path}: short read for tensor {entry.name!r}")
        actual = masked_crc32c(data) if check else entry.crc32c
        if actual != entry.crc32c:
            raise CheckpointError(
                f"{path}: checksum mismatch for tensor {entry.name!r} "
                f"(stored {entry.crc32c:#010x}, computed {actual:#010x})"
            )
        return data, path


def _to_array(entry: BundleEntry, data: bytes, path: Path) -> np.ndarray:
    """Decode checked tensor bytes into an array that owns its memory."""
    dtype = DTYPES[entry.dtype]
    array = np.frombuffer(data, dtype=dtype).reshape(entry.shape)
    if entry.dtype == DT_BFLOAT16:
        return (array.astype("<u4") << 16).view("<f4").astype(np.float32)
    if dtype.kind == "b" and np.frombuffer(data, np.uint8).max(initial=0) > 1:
        raise CheckpointError(f"{path}: bool tensor {entry.name!r} holds bytes other than 0 and 1")
    return array.astype(dtype.newbyteorder("="), copy=True)


# ---------------------------------------------------------- assembling ---


def _read_entry(index: _Index, shards: _Shards, entry: BundleEntry) -> np.ndarray:
    if not entry.slices:
        return _to_array(entry, *shards.read(entry))
    return _read_sliced(index, shards, entry)


def _slice_parts(index: _Index, entry: BundleEntry) -> list[tuple[BundleEntry, tuple[slice, ...]]]:
    """Find and check the stored entry of every slice of a partitioned variable."""
    parts, total = [], 0
    for extents in entry.slices:
        stored = index.slices.get(_slice_key(entry.name, extents))
        if stored is None:
            raise TableError(f"partitioned tensor {entry.name!r}: slice {list(extents)} is missing")
        extents = tuple(
            (s, dim if n == -1 else n) for (s, n), dim in zip(extents, entry.shape, strict=True)
        )
        part = stored._replace(name=f"{entry.name}{list(extents)}")
        if part.slices:
            raise TableError(f"tensor {part.name!r}: a slice is itself sliced")
        if part.dtype != entry.dtype or part.shape != tuple(n for _, n in extents):
            raise TableError(
                f"tensor {part.name!r}: slice dtype {part.dtype} or shape "
                f"{list(part.shape)} does not match its extents"
            )
        _check_part(part, index.num_shards)
        parts.append((part, tuple(slice(s, s + n) for s, n in extents)))
        total += math.prod(part.shape)
    if total != math.prod(entry.shape):
        raise TableError(
            f"partitioned tensor {entry.name!r}: slices hold {total} elements, "
            f"shape {list(entry.shape)} needs {math.prod(entry.shape)}"
        )
    return parts


def _read_sliced(index: _Index, shards: _Shards, entry: BundleEntry) -> np.ndarray:
    try:
        parts = _slice_parts(index, entry)
    except TableError as exc:
        raise CheckpointError(f"{index.path}: {exc}") from exc
    # Read (bounds-checked) before allocating the whole tensor.
    pieces = [(_to_array(part, *shards.read(part)), where) for part, where in parts]
    result = np.zeros(entry.shape, dtype=pieces[0][0].dtype)
    covered = np.zeros(entry.shape, dtype=bool)
    for values, where in pieces:
        if covered[where].any():
            raise CheckpointError(f"{index.path}: slices of {entry.name!r} overlap")
        result[where], covered[where] = values, True
    if not covered.all():
        raise CheckpointError(f"{index.path}: slices of {entry.name!r} do not cover the tensor")
    return result


# -------------------------------------------------------------- public ---


def _prefix(prefix: str | os.PathLike[str]) -> Path:
    path = Path(os.fspath(prefix))
    if path.name.endswith(".index") and not path.with_name(path.name + ".index").exists():
        path = path.with_name(path.name[: -len(".index")])
    return path


def list_variables(prefix: str | os.PathLike[str]) -> list[VariableInfo]:
    """Names, dtypes and shapes of the variables saved under ``prefix``, in name order.

    Reads only ``PREFIX.index``.  The dtype is the one :func:`read_checkpoint`
    returns (bfloat16 is reported as float32).
    """
    index = _load_index(_prefix(prefix))
    return [VariableInfo(e.name, _result_dtype(e), e.shape) for e in index.entries.values()]


def _result_dtype(entry: BundleEntry) -> np.dtype:
    if entry.dtype == DT_BFLOAT16:
        return np.dtype(np.float32)
    return DTYPES[entry.dtype].newbyteorder("=")


_DT_STRING = 7
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
#: Why a TF1 reader refuses a TF2 checkpoint, and what reads it.
OBJECT_BASED = (
    "a TF2 object-based checkpoint (it holds _CHECKPOINTABLE_OBJECT_GRAPH: written by "
    "tf.train.Checkpoint or Keras save_weights), not a TF1 Saver checkpoint; its "
    "Keras layers load with rnnfuse.stack_from_keras(prefix) "
    "(`rnnfuse inspect PREFIX`, `rnnfuse convert PREFIX --out FILE`)"
)


def is_object_based(prefix: str | os.PathLike[str]) -> bool:
    """Whether ``prefix`` is a TF2 object-based checkpoint (reads the index only)."""
    strings: dict[str, BundleEntry] = {}
    _load_index(_prefix(prefix), strings)
    return _OBJECT_GRAPH in strings


def read_object_bundle(
    prefix: str | os.PathLike[str],
) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """A TF2 object-based checkpoint (a SavedModel's ``variables/variables``): its numeric
    tensors, as :func:`read_checkpoint`, and its scalar string tensors (such as
    ``_CHECKPOINTABLE_OBJECT_GRAPH``) as bytes.  Raises :class:`CheckpointError`."""
    path = _prefix(prefix)
    strings: dict[str, BundleEntry] = {}
    index = _load_index(path, strings)
    with _Shards(path, index.num_shards) as shards:
        arrays = {name: _read_entry(index, shards, entry) for name, entry in index.entries.items()}
        texts = {}
        for name, entry in strings.items():
            data, where = shards.read(entry, check=False)
            texts[name] = _scalar_string(data, entry, where)
    return arrays, texts


def _scalar_string(data: bytes, entry: BundleEntry, path: Path) -> bytes:
    """A bundle's scalar string: varint64 length, masked CRC32C of the length, the bytes.

    TF's CRC of a string tensor runs over the length as a little-endian uint32 (uint64 if
    it does not fit; not its varint), then the 4 length-checksum bytes, then the string."""
    name = entry.name
    try:
        length, pos = read_varint(data, 0, len(data))
    except TableError as exc:
        raise CheckpointError(f"{path}: string tensor {name!r}: {exc}") from exc
    if pos + 4 + length != len(data):
        raise CheckpointError(
            f"{path}: string tensor {name!r}: a length of {length} bytes does "
            f"not fit its {len(data)} stored bytes"
        )
    crc = crc32c(length.to_bytes(4 if length < 1 << 32 else 8, "little"))
    if mask_crc(crc) != int.from_bytes(data[pos : pos + 4], "little"):
        raise CheckpointError(f"{path}: string tensor {name!r}: length checksum mismatch")
    if mask_crc(crc32c(data[pos:], crc)) != entry.crc32c:
        raise CheckpointError(f"{path}: checksum mismatch for string tensor {name!r}")
    return data[pos + 4 :]


def read_checkpoint(prefix: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every variable saved under ``prefix`` into a ``{name: ndarray}`` dict.

    ``prefix`` is what ``Saver.save`` returned, e.g. ``"run/model.ckpt-1000"``
    (a trailing ``.index`` is accepted too).  Arrays own their memory and are
    in native byte order.  Raises :class:`CheckpointError`, naming the file,
    for a missing file, a failed checksum, anything out of bounds and any
    unsupported content.
    """
    path = _prefix(prefix)
    index = _load_index(path)
    with _Shards(path, index.num_shards) as shards:
        return {name: _read_entry(index, shards, entry) for name, entry in index.entries.items()}
