"""Fuzz the TF1 checkpoint reader: damaged files must only raise ``CheckpointError``.

Not collected by pytest (the name does not start with ``test_``);
``tests/tf1/test_tf1_checkpoint.py`` imports the helpers below and runs small,
Hypothesis-driven versions of the same attacks.  The large run::

    PYTHONPATH=src python tests/tf1/fuzz_tf1_checkpoint.py 100000    # from the repository root

Each case takes a real checkpoint from ``tests/fixtures/tf1`` and damages it
with one mutator.  The oracle:

* damage that checksums protect (truncation, bit flips, overwritten bytes,
  random files): ``CheckpointError``, or a result equal to the original
  (a flip in the footer padding changes nothing);
* damage re-sealed with fresh checksums (mutated protobuf values, random
  tables built by :func:`build_table`): ``CheckpointError`` or any well-formed
  result;
* anything else escaping (``IndexError``, ``MemoryError``, a hang...) is a bug.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rnnfuse.tf1.checkpoint import CheckpointError, read_checkpoint
from rnnfuse.tf1.checkpoint.crc import masked_crc32c
from rnnfuse.tf1.checkpoint.table import (
    FOOTER_SIZE,
    TABLE_MAGIC,
    decode_handle,
    iter_block,
    read_block,
    read_footer,
    read_table,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf1"
SEED_CASES = (
    "basic_lstm",
    "seed_two_gru_encoders",
    "bidirectional_multi_lstm",
    "reader_cases/sharded",
    "reader_cases/partitioned",
    "reader_cases/dtypes",
)

Files = dict[str, bytes]  # file name (model.index, model.data-...) -> contents


class Original(NamedTuple):
    name: str
    files: Files
    expected: dict[str, np.ndarray]


# ------------------------------------------------------------ writing ---


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def build_block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    """A LevelDB block with prefix-compressed keys and a restart array."""
    out, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(prev)) and key[shared] == prev[shared]:
                shared += 1
        out += encode_varint(shared) + encode_varint(len(key) - shared) + encode_varint(len(value))
        out += key[shared:] + value
        prev = key
    for offset in restarts or [0]:
        out += offset.to_bytes(4, "little")
    return bytes(out + len(restarts or [0]).to_bytes(4, "little"))


def _seal(out: bytearray, block: bytes, kind: int = 0) -> bytes:
    """Append block + trailer to ``out``; return the encoded block handle."""
    handle = encode_varint(len(out)) + encode_varint(len(block))
    out += block + bytes([kind]) + masked_crc32c(block + bytes([kind])).to_bytes(4, "little")
    return handle


def build_table(
    entries: list[tuple[bytes, bytes]],
    block_size: int = 4096,
    restart_interval: int = 16,
    kind: int = 0,
) -> bytes:
    """An uncompressed LevelDB table (as TensorFlow's TableBuilder writes it)."""
    out, index, chunk, size = bytearray(), [], [], 0
    for key, value in entries:
        chunk.append((key, value))
        size += len(key) + len(value) + 8
        if size >= block_size:
            index.append((key, _seal(out, build_block(chunk, restart_interval), kind)))
            chunk, size = [], 0
    if chunk:
        index.append((chunk[-1][0], _seal(out, build_block(chunk, restart_interval), kind)))
    metaindex = _seal(out, build_block([]))
    index_handle = _seal(out, build_block(index, 1))
    footer = (metaindex + index_handle).ljust(FOOTER_SIZE - 8, b"\0")
    return bytes(out + footer + TABLE_MAGIC.to_bytes(8, "little"))


def write_files(directory: Path, files: Files) -> Path:
    """Replace the checkpoint in ``directory`` by ``files``; return the prefix."""
    for old in directory.glob("model.*"):
        old.unlink()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory / "model"


# ------------------------------------------------------------ reading ---


def load_original(case: str) -> Original:
    directory = FIXTURES / case
    files = {p.name: p.read_bytes() for p in sorted(directory.glob("model.*"))}
    return Original(case, files, read_checkpoint(directory / "model"))


def same_result(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def outcome(directory: Path, files: Files, original: Original | None) -> str:
    """Read damaged files: 'error', 'same' or 'other' (only if ``original`` is None)."""
    prefix = write_files(directory, files)
    try:
        result = read_checkpoint(prefix)
    except CheckpointError as exc:
        assert str(exc), "empty CheckpointError message"
        return "error"
    assert isinstance(result, dict)
    for name, array in result.items():
        assert isinstance(name, str) and isinstance(array, np.ndarray) and array.flags.owndata
    if original is None:
        return "other"
    assert same_result(result, original.expected), f"{original.name}: damage went unnoticed"
    return "same"


# ----------------------------------------------------------- mutators ---


def truncate(data: bytes, cut: int) -> bytes:
    return data[:cut]


def flip(data: bytes, pos: int, bit: int) -> bytes:
    out = bytearray(data)
    out[pos] ^= 1 << bit
    return bytes(out)


def overwrite(data: bytes, pos: int, junk: bytes) -> bytes:
    return data[:pos] + junk + data[pos + len(junk) :]


def data_blocks(index: bytes) -> list[tuple[int, int]]:
    """(offset, size) of each data block of a valid index file."""
    _, index_handle = read_footer(index)
    entries = iter_block(read_block(index, index_handle, "index"), "index")
    return [tuple(decode_handle(handle)[0]) for _, handle in entries]  # type: ignore[misc]


def reseal(index: bytes, offset: int, size: int) -> bytes:
    """Recompute the checksum of the block at ``offset`` after its bytes changed."""
    end = offset + size
    crc = masked_crc32c(index[offset : end + 1]).to_bytes(4, "little")
    return index[: end + 1] + crc + index[end + 5 :]


def mutate_value(value: bytes, rng: random.Random) -> bytes:
    """Damage one protobuf value: flip, overwrite, insert, delete or truncate."""
    if not value:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
    pos = rng.randrange(len(value))
    choice = rng.randrange(5)
    if choice == 0:
        return flip(value, pos, rng.randrange(8))
    if choice == 1:
        return overwrite(
            value, pos, bytes([rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))])
        )
    if choice == 2:
        return value[:pos] + bytes([rng.randrange(256)]) + value[pos:]
    if choice == 3:
        return value[:pos] + value[pos + 1 :]
    return value[:pos]


def files_with_index(original: Original, index: bytes) -> Files:
    return {**original.files, "model.index": index}


def _pick_file(original: Original, rng: random.Random) -> str:
    return rng.choice(sorted(original.files))


def m_truncate(original: Original, rng: random.Random) -> tuple[Files, bool]:
    name = _pick_file(original, rng)
    data = original.files[name]
    return {**original.files, name: truncate(data, rng.randrange(max(len(data), 1)))}, True


def m_flip(original: Original, rng: random.Random) -> tuple[Files, bool]:
    name = _pick_file(original, rng)
    data = original.files[name]
    if not data:
        return original.files, True
    return {**original.files, name: flip(data, rng.randrange(len(data)), rng.randrange(8))}, True


def m_overwrite(original: Original, rng: random.Random) -> tuple[Files, bool]:
    name = _pick_file(original, rng)
    data = original.files[name]
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
    return {**original.files, name: overwrite(data, rng.randrange(max(len(data), 1)), junk)}, True


def m_reseal_block(original: Original, rng: random.Random) -> tuple[Files, bool]:
    index = original.files["model.index"]
    offset, size = rng.choice(data_blocks(index))
    pos = offset + rng.randrange(size)
    damaged = (
        flip(index, pos, rng.randrange(8))
        if rng.random() < 0.5
        else overwrite(index, pos, bytes([rng.randrange(256)]))
    )
    return files_with_index(original, reseal(damaged, offset, size)), False


def m_mutate_entry(original: Original, rng: random.Random) -> tuple[Files, bool]:
    entries = read_table(original.files["model.index"])
    i = rng.randrange(len(entries))
    key, value = entries[i]
    if rng.random() < 0.2:
        key = mutate_value(key, rng)
    else:
        value = mutate_value(value, rng)
    entries[i] = (key, value)
    entries = sorted(dict(entries).items())
    return files_with_index(
        original,
        build_table(
            entries, block_size=rng.choice((64, 4096)), restart_interval=rng.choice((1, 3, 16))
        ),
    ), False


def m_random_index(original: Original, rng: random.Random) -> tuple[Files, bool]:
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if rng.random() < 0.5:
        junk += TABLE_MAGIC.to_bytes(8, "little")
    return files_with_index(original, junk), True


MUTATORS: dict[str, Callable[[Original, random.Random], tuple[Files, bool]]] = {
    "truncate": m_truncate,
    "flip": m_flip,
    "overwrite": m_overwrite,
    "reseal_block": m_reseal_block,
    "mutate_entry": m_mutate_entry,
    "random_index": m_random_index,
}


def run(count: int, seed: int = 0) -> Counter[str]:
    rng = random.Random(seed)
    originals = [load_original(case) for case in SEED_CASES]
    tally: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(count):
            original = rng.choice(originals)
            name = rng.choice(sorted(MUTATORS))
            files, protected = MUTATORS[name](original, rng)
            result = outcome(Path(tmp), files, original if protected else None)
            tally[f"{name}:{result}"] += 1
    return tally


def main(argv: list[str]) -> None:
    count = int(argv[1]) if len(argv) > 1 else 10_000
    seed = int(argv[2]) if len(argv) > 2 else 0
    start = time.perf_counter()
    tally = run(count, seed)
    seconds = time.perf_counter() - start
    for key in sorted(tally):
        print(f"  {key:28s} {tally[key]}")
    print(
        f"tried {sum(tally.values())} cases (seed {seed}) in {seconds:.0f} s: "
        "only CheckpointError escaped, no damage went unnoticed"
    )


if __name__ == "__main__":
    main(sys.argv)
