"""Tests of the TF1 checkpoint reader against checkpoints written by TensorFlow.

The fixtures under ``tests/fixtures/tf1`` come from ``make_fixtures.py`` there
(TensorFlow 2.21, ``tf.compat.v1``); see its README for how to regenerate them.
Damaged-file tests share their mutators with ``tests/tf1/fuzz_tf1_checkpoint.py``,
which runs the same attacks at a much larger scale.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from fuzz_tf1_checkpoint import (
    FIXTURES,
    build_table,
    data_blocks,
    encode_varint,
    flip,
    load_original,
    m_mutate_entry,
    m_reseal_block,
    outcome,
    reseal,
    write_files,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnfuse.tf1.checkpoint.crc import _loop_update, _python_crc32c, crc32c, masked_crc32c
from rnnfuse.tf1.checkpoint.reader import (
    CheckpointError,
    VariableInfo,
    _ordered_signed,
    _slice_key,
    list_variables,
    read_checkpoint,
)
from rnnfuse.tf1.checkpoint.table import TABLE_MAGIC, TableError, read_table, read_varint

RNN_CASES = sorted(p.parent.name for p in FIXTURES.glob("*/case.json"))
BASIC = FIXTURES / "basic_lstm"
DATA = "model.data-00000-of-00001"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory the damaged-file tests overwrite again and again."""
    return tmp_path_factory.mktemp("damaged")


def copy_case(case: Path, target: Path) -> Path:
    shutil.copytree(case, target)
    return target / "model"


def assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


# ------------------------------------------------------------- golden ---


def test_all_rnn_cases_present() -> None:
    assert set(RNN_CASES) >= {
        "basic_lstm",
        "basic_lstm_forget_bias",
        "lstm_peepholes",
        "lstm_proj",
        "lstm_peepholes_proj_clip",
        "gru",
        "basic_rnn",
        "seed_multi_lstm",
        "seed_two_gru_encoders",
        "mixed_multi",
        "lstm_sequence_length",
        "gru_sequence_length",
        "bidirectional_multi_lstm",
        "nested_scope",
        "float64",
        "initial_state",
    }


@pytest.mark.parametrize("case", RNN_CASES)
def test_rnn_fixture_values(case: str) -> None:
    with np.load(FIXTURES / case / "variables.npz") as expected:
        assert_same(read_checkpoint(FIXTURES / case / "model"), dict(expected))


@pytest.mark.parametrize("case", RNN_CASES)
def test_rnn_fixture_list_variables(case: str) -> None:
    info = json.loads((FIXTURES / case / "case.json").read_text())
    listed = list_variables(FIXTURES / case / "model")
    described = sorted((v["name"], v["dtype"], tuple(v["shape"])) for v in info["variables"])
    assert [(v.name, v.dtype.name, v.shape) for v in listed] == described
    assert all(isinstance(v, VariableInfo) for v in listed)


def test_arrays_own_their_memory_and_are_writable() -> None:
    for array in read_checkpoint(BASIC / "model").values():
        assert array.flags.owndata and array.flags.writeable


def test_dtypes_scalars_empty_and_long_names() -> None:
    case = FIXTURES / "reader_cases" / "dtypes"
    got = read_checkpoint(case / "model")
    with np.load(case / "expected.npz") as expected:
        assert_same(got, dict(expected))
    assert got["shapes/scalar"].shape == () and got["shapes/empty_0x3"].shape == (0, 3)
    assert got["dtypes/bfloat16"].dtype == np.float32


def test_list_variables_needs_only_the_index(tmp_path: Path) -> None:
    prefix = copy_case(FIXTURES / "reader_cases" / "dtypes", tmp_path / "c")
    (tmp_path / "c" / DATA).unlink()
    info = {v.name: v for v in list_variables(prefix)}
    assert info["dtypes/bfloat16"] == ("dtypes/bfloat16", np.dtype(np.float32), (2, 3))
    assert info["dtypes/int16"].dtype == np.int16 and info["shapes/empty_0x3"].shape == (0, 3)
    with pytest.raises(CheckpointError, match=r"model\.data-00000-of-00001"):
        read_checkpoint(prefix)


def test_index_with_several_data_blocks() -> None:
    case = FIXTURES / "reader_cases" / "many_blocks"
    assert len(data_blocks((case / "model.index").read_bytes())) > 1
    got = read_checkpoint(case / "model")
    with np.load(case / "expected.npz") as expected:
        names, values = list(expected["names"]), expected["values"]
    assert sorted(got) == sorted(names)
    for name, value in zip(names, values, strict=True):
        assert got[name].dtype == np.float32 and got[name] == value


def test_several_data_shards() -> None:
    case = FIXTURES / "reader_cases" / "sharded"
    assert len(list(case.glob("model.data-*-of-00003"))) == 3
    with np.load(case / "expected.npz") as expected:
        assert_same(read_checkpoint(case / "model"), dict(expected))


def test_partitioned_variables_are_reassembled() -> None:
    case = FIXTURES / "reader_cases" / "partitioned"
    with np.load(case / "expected.npz") as expected:
        assert_same(read_checkpoint(case / "model"), dict(expected))
    names = [v.name for v in list_variables(case / "model")]
    assert names == ["partitioned/columns", "partitioned/rows", "partitioned/uneven", "plain"]


def test_string_variables_are_rejected_by_name() -> None:
    with pytest.raises(CheckpointError, match=r"'text' has unsupported dtype 7 \(string\)"):
        read_checkpoint(FIXTURES / "reader_cases" / "string" / "model")


def test_prefix_may_end_in_dot_index() -> None:
    assert read_checkpoint(BASIC / "model.index").keys() == read_checkpoint(BASIC / "model").keys()


# ------------------------------------------------------- missing files ---


def test_missing_index_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.index: cannot read"):
        read_checkpoint(tmp_path / "nope")


def test_missing_data_shard_names_the_file(tmp_path: Path) -> None:
    prefix = copy_case(FIXTURES / "reader_cases" / "sharded", tmp_path / "c")
    (tmp_path / "c" / "model.data-00001-of-00003").unlink()
    with pytest.raises(
        CheckpointError, match=r"model\.data-00001-of-00003: cannot open data shard 1"
    ):
        read_checkpoint(prefix)


# ------------------------------------------------------- damaged table ---


def read_damaged(scratch: Path, index: bytes | None = None, data: bytes | None = None) -> None:
    files = load_original("basic_lstm").files
    files = {**files, "model.index": files["model.index"] if index is None else index}
    read_checkpoint(write_files(scratch, {**files, DATA: files[DATA] if data is None else data}))


def test_wrong_magic(scratch: Path) -> None:
    index = (BASIC / "model.index").read_bytes()
    with pytest.raises(CheckpointError, match="bad table magic number"):
        read_damaged(scratch, index=flip(index, len(index) - 1, 0))


def test_too_short_index(scratch: Path) -> None:
    with pytest.raises(CheckpointError, match="fewer than the 48-byte table footer"):
        read_damaged(scratch, index=b"\0" * 10)


@pytest.mark.parametrize(
    ("kind", "message"), [(1, "snappy-compressed"), (7, "unknown compression type 7")]
)
def test_compressed_block(scratch: Path, kind: int, message: str) -> None:
    index = bytearray((BASIC / "model.index").read_bytes())
    offset, size = data_blocks(bytes(index))[0]
    index[offset + size] = kind
    with pytest.raises(CheckpointError, match=message):
        read_damaged(scratch, index=reseal(bytes(index), offset, size))


def test_block_checksum_mismatch(scratch: Path) -> None:
    index = (BASIC / "model.index").read_bytes()
    with pytest.raises(
        CheckpointError, match=r"model\.index: data block 0 at offset 0: checksum mismatch"
    ):
        read_damaged(scratch, index=flip(index, 20, 3))


def test_tensor_checksum_mismatch(scratch: Path) -> None:
    data = (BASIC / DATA).read_bytes()
    with pytest.raises(
        CheckpointError, match=r"checksum mismatch for tensor 'rnn/basic_lstm_cell/bias'"
    ):
        read_damaged(scratch, data=flip(data, 0, 0))  # the bias is stored first


def test_truncated_data_names_tensor_and_file(scratch: Path) -> None:
    data = (BASIC / DATA).read_bytes()
    with pytest.raises(
        CheckpointError, match=r"model\.data-00000-of-00001: tensor '.*' .* runs past"
    ):
        read_damaged(scratch, data=data[:-1])


# --------------------------------------------------- crafted contents ---


def field(number: int, value: int | bytes, fixed32: bool = False) -> bytes:
    if fixed32:
        return encode_varint(number << 3 | 5) + int(value).to_bytes(4, "little")
    if isinstance(value, bytes):
        return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value
    return encode_varint(number << 3) + encode_varint(value % (1 << 64))


def header(num_shards: int = 1, endianness: int = 0, min_consumer: int = 0) -> bytes:
    version = field(1, 1) + field(2, min_consumer)
    return field(1, num_shards) + field(2, endianness) + field(3, version)


def entry(
    data: bytes,
    dtype: int = 1,
    dims: tuple[int, ...] = (2,),
    shard: int = 0,
    offset: int = 0,
    size: int | None = None,
    extra: bytes = b"",
) -> bytes:
    shape = b"".join(field(2, field(1, d)) for d in dims)
    size = len(data) if size is None else size
    return (
        field(1, dtype)
        + field(2, shape)
        + field(3, shard)
        + field(4, offset)
        + field(5, size)
        + field(6, masked_crc32c(data[offset : offset + size]), fixed32=True)
        + extra
    )


def read_crafted(
    scratch: Path, entries: list[tuple[bytes, bytes]], data: bytes
) -> dict[str, np.ndarray]:
    return read_checkpoint(write_files(scratch, {"model.index": build_table(entries), DATA: data}))


FLOATS = np.asarray([1.5, -2.0], "<f4").tobytes()


def test_crafted_checkpoint_reads(scratch: Path) -> None:
    got = read_crafted(scratch, [(b"", header()), (b"w", entry(FLOATS))], FLOATS)
    np.testing.assert_array_equal(got["w"], [1.5, -2.0])


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([(b"", header(endianness=1)), (b"w", entry(FLOATS))], "big-endian"),
        (
            [(b"", header(min_consumer=5)), (b"w", entry(FLOATS))],
            "not readable by a version-1 reader",
        ),
        ([(b"", header(num_shards=0))], "num_shards=0"),
        ([(b"w", entry(FLOATS))], "no bundle header"),
        (
            [(b"", header()), (b"w", entry(FLOATS, dtype=99))],
            r"'w' has unsupported dtype 99 \(unknown\)",
        ),
        ([(b"", header()), (b"w", entry(FLOATS, dtype=20))], r"dtype 20 \(resource\)"),
        ([(b"", header()), (b"w", entry(FLOATS, dims=(3,)))], "needs 12 bytes, the index says 8"),
        ([(b"", header()), (b"w", entry(FLOATS, dims=(-1,)))], "negative or unknown dimension"),
        (
            [(b"", header()), (b"w", entry(FLOATS, shard=1))],
            "in shard 1, but the header says num_shards=1",
        ),
        ([(b"", header()), (b"w", entry(FLOATS, shard=-1))], "in shard -1"),
        ([(b"", header()), (b"w\xff", entry(FLOATS))], "not valid UTF-8"),
        (
            [(b"", header()), (b"w", entry(FLOATS, extra=field(7, field(1, b"") * 2)))],
            "a slice has 2 extents for rank 1",
        ),
        (
            [(b"", header()), (b"w", entry(FLOATS, extra=field(7, field(1, field(2, 2)))))],
            "slice .* is missing",
        ),
        (
            [(b"", header()), (b"w", entry(FLOATS, extra=field(7, field(1, field(1, 1)))))],
            "does not fit dimension 2",
        ),
        ([(b"", header()), (b"w", entry(FLOATS) + b"\x0b")], "unsupported protobuf wire type 3"),
        (
            [
                (b"", header()),
                (b"w", entry(FLOATS) + b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
            ],
            "longer than 10 bytes",
        ),
    ],
)
def test_crafted_errors(scratch: Path, entries: list[tuple[bytes, bytes]], message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        read_crafted(scratch, entries, FLOATS)


def test_offset_past_end_of_data(scratch: Path) -> None:
    with pytest.raises(
        CheckpointError, match="at offset 4 with 8 bytes runs past the end of the file"
    ):
        read_crafted(
            scratch, [(b"", header()), (b"w", entry(FLOATS + FLOATS, offset=4, size=8))], FLOATS
        )


def test_bool_bytes_must_be_0_or_1(scratch: Path) -> None:
    data = bytes([1, 2])
    with pytest.raises(CheckpointError, match="bool tensor 'w' holds bytes other than 0 and 1"):
        read_crafted(scratch, [(b"", header()), (b"w", entry(data, dtype=10))], data)


def test_large_tensor_uses_the_vectorized_crc(scratch: Path) -> None:
    values = np.random.default_rng(3).normal(size=(301, 257)).astype("<f4")
    data = values.tobytes()
    got = read_crafted(scratch, [(b"", header()), (b"big", entry(data, dims=values.shape))], data)
    np.testing.assert_array_equal(got["big"], values)
    with pytest.raises(CheckpointError, match="checksum mismatch for tensor 'big'"):
        read_crafted(
            scratch,
            [(b"", header()), (b"big", entry(data, dims=values.shape))],
            flip(data, 200_001, 5),
        )


def slice_proto(*extents: tuple[int, int | None]) -> bytes:
    """A TensorSliceProto; length None is a full extent (no length field)."""
    parts = [field(1, start) + (b"" if n is None else field(2, n)) for start, n in extents]
    return field(7, b"".join(field(1, p) for p in parts))


def test_partitioned_with_full_extent(scratch: Path) -> None:
    """A slice over a whole dimension is keyed with length -1 (kFullExtent)."""
    full = np.arange(12, dtype="<f4").reshape(3, 4)
    top, bottom = full[:1].tobytes(), full[1:].tobytes()
    data = top + bottom
    entries = [
        (b"", header()),
        (
            b"m",
            entry(
                b"",
                dims=(3, 4),
                size=0,
                extra=slice_proto((0, 1), (0, None)) + slice_proto((1, 2), (0, None)),
            ),
        ),
        (_slice_key("m", ((0, 1), (0, -1))), entry(data, dims=(1, 4), size=len(top))),
        (
            _slice_key("m", ((1, 2), (0, -1))),
            entry(data, dims=(2, 4), offset=len(top), size=len(bottom)),
        ),
    ]
    got = read_crafted(scratch, sorted(entries), data)
    assert list(got) == ["m"]
    np.testing.assert_array_equal(got["m"], full)
    with pytest.raises(
        CheckpointError, match=r"tensor 'm': slice \[\(1, 2\), \(0, -1\)\] is missing"
    ):
        read_crafted(scratch, sorted(entries[:3]), data)


def test_overlapping_slices(scratch: Path) -> None:
    data = np.zeros((2, 2), "<f4").tobytes()
    extra = slice_proto((0, 2), (0, None)) + slice_proto((1, 2), (0, None))  # rows 1 twice, 3 never
    entries = [
        (b"", header()),
        (b"m", entry(b"", dims=(4, 2), size=0, extra=extra)),
        (_slice_key("m", ((0, 2), (0, -1))), entry(data, dims=(2, 2))),
        (_slice_key("m", ((1, 2), (0, -1))), entry(data, dims=(2, 2))),
    ]
    with pytest.raises(CheckpointError, match="slices of 'm' overlap"):
        read_crafted(scratch, sorted(entries), data)


@given(
    entries=st.lists(
        st.tuples(st.binary(min_size=1, max_size=30), st.binary(max_size=40)), max_size=60
    ),
    block_size=st.sampled_from([32, 256, 4096]),
    restart_interval=st.integers(1, 20),
)
@settings(max_examples=60)
def test_table_roundtrip(
    entries: list[tuple[bytes, bytes]], block_size: int, restart_interval: int
) -> None:
    """Prefix compression, restart points and several blocks, written by our test writer."""
    entries = sorted(dict(entries).items())
    assert read_table(build_table(entries, block_size, restart_interval)) == entries


def test_out_of_order_keys_are_rejected() -> None:
    with pytest.raises(TableError, match="out of order"):
        read_table(build_table([(b"b", b""), (b"a", b"")]))


# ---------------------------------------------------------- primitives ---


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283
    crc = crc32c(b"abc")
    assert masked_crc32c(b"abc") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def test_the_pure_python_fallback_crc() -> None:
    """What runs where google-crc32c has no compiled extension."""
    assert _python_crc32c(b"123456789") == 0xE3069283
    assert _python_crc32c(b"56789", _python_crc32c(b"1234")) == 0xE3069283
    assert _python_crc32c(bytearray(b"abc")) == crc32c(memoryview(b"abc"))


@given(
    size=st.integers(0, 300_000), seed=st.integers(0, 2**32 - 1), start=st.integers(0, 2**32 - 1)
)
@settings(max_examples=12)
def test_vectorized_crc_matches_the_loop(size: int, seed: int, start: int) -> None:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data, start) == _loop_update(start ^ 0xFFFFFFFF, data) ^ 0xFFFFFFFF


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x80" * 11, "longer than 10 bytes"),
        (b"\x80\x80", "truncated varint"),
        (b"\xff" * 9 + b"\x02", "overflows 64 bits"),
    ],
)
def test_varint_errors(raw: bytes, message: str) -> None:
    with pytest.raises(TableError, match=message):
        read_varint(raw, 0, len(raw))


def test_varint32_cap() -> None:
    with pytest.raises(TableError, match="longer than 5 bytes"):
        read_varint(b"\x80" * 6, 0, 6, 5)
    assert read_varint(b"\xff\xff\xff\xff\x0f", 0, 5, 5) == (2**32 - 1, 5)


def test_ordered_code_known_values() -> None:
    """Values seen in TensorFlow-written slice keys (reader_cases/partitioned)."""
    assert _ordered_signed(0) == b"\x80" and _ordered_signed(2) == b"\x82"
    assert _ordered_signed(-1) == b"\x7f" and _ordered_signed(65) == b"\xc0\x41"


@given(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**63), 2**63 - 1))
def test_ordered_code_preserves_order_and_length(a: int, b: int) -> None:
    ea, eb = _ordered_signed(a), _ordered_signed(b)
    assert (a < b) == (ea < eb) and (a == b) == (ea == eb)
    n = len(ea)
    assert -(2 ** (7 * n - 1)) <= a < 2 ** (7 * n - 1) or n == 10


# -------------------------------------------------------------- fuzzing ---


def test_index_truncated_at_every_offset(scratch: Path) -> None:
    index = (BASIC / "model.index").read_bytes()
    for cut in range(len(index)):
        assert (
            outcome(scratch, {"model.index": index[:cut], DATA: (BASIC / DATA).read_bytes()}, None)
            == "error"
        )


def test_data_truncated_at_every_offset(scratch: Path) -> None:
    original = load_original("basic_lstm")
    data = original.files[DATA]
    for cut in range(0, len(data), 7):
        assert outcome(scratch, {**original.files, DATA: data[:cut]}, original) == "error"


@pytest.mark.slow
def test_every_bit_flip_in_the_index_is_caught(scratch: Path) -> None:
    """Only flips in the footer's zero padding may pass, and then nothing changes."""
    original = load_original("basic_lstm")
    index = original.files["model.index"]
    passed = set()
    for pos in range(len(index)):
        for bit in range(8):
            if (
                outcome(scratch, {**original.files, "model.index": flip(index, pos, bit)}, original)
                == "same"
            ):
                passed.add(pos)
    footer = len(index) - 48
    assert passed and min(passed) > footer and max(passed) < len(index) - 8


ORIGINALS = {
    case: load_original(case)
    for case in (
        "basic_lstm",
        "seed_two_gru_encoders",
        "reader_cases/sharded",
        "reader_cases/partitioned",
    )
}


@pytest.mark.slow
@given(case=st.sampled_from(sorted(ORIGINALS)), data=st.data())
@settings(max_examples=300)
def test_random_bit_flips(scratch: Path, case: str, data: st.DataObject) -> None:
    original = ORIGINALS[case]
    name = data.draw(st.sampled_from(sorted(original.files)))
    content = original.files[name]
    pos, bit = data.draw(st.integers(0, len(content) - 1)), data.draw(st.integers(0, 7))
    assert outcome(scratch, {**original.files, name: flip(content, pos, bit)}, original) in (
        "error",
        "same",
    )


@given(junk=st.binary(max_size=300), with_magic=st.booleans())
@settings(max_examples=150)
def test_random_bytes_as_index(scratch: Path, junk: bytes, with_magic: bool) -> None:
    index = junk + TABLE_MAGIC.to_bytes(8, "little") if with_magic else junk
    assert outcome(scratch, {"model.index": index, DATA: b""}, None) == "error"


@pytest.mark.slow
@given(
    case=st.sampled_from(sorted(ORIGINALS)),
    rng=st.randoms(use_true_random=False),
    resealed_entry=st.booleans(),
)
@settings(max_examples=300)
def test_damage_behind_valid_checksums(
    scratch: Path, case: str, rng: random.Random, resealed_entry: bool
) -> None:
    """Mutated blocks and protobuf values, re-sealed with good CRCs: parse errors only."""
    mutate = m_mutate_entry if resealed_entry else m_reseal_block
    files, _ = mutate(ORIGINALS[case], rng)
    assert outcome(scratch, files, None) in ("error", "other")
