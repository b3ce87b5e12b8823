"""Fuzz the Keras 2 readers: damaged ``.h5`` attributes and ``keras_metadata.pb`` files must
only raise the library's own errors (``KerasFormatError`` or a ``ValueError``/``TypeError``
raised by rnnfuse's own code), never an ``IndexError``, ``KeyError``, ``AttributeError``
from deep inside, a hang or a crash.  A quick in-suite run with a fixed seed."""

from __future__ import annotations

import json
import random
import shutil
import traceback
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from rnnfuse import stack_from_keras
from rnnfuse.convert._keras_model import KerasFormatError
from rnnfuse.convert.keras_savedmodel import read_keras_metadata

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
SRC = str(Path(__file__).parents[2] / "src" / "rnnfuse")


def _own_error(exc: BaseException) -> bool:
    if isinstance(exc, KerasFormatError):
        return True
    if type(exc) not in (ValueError, TypeError):
        return False
    where = traceback.extract_tb(exc.__traceback__)[-1].filename
    return "rnnfuse" in where and "site-packages" not in where


def _check(call: Any) -> str:
    try:
        call()
    except Exception as exc:
        assert _own_error(exc), f"{type(exc).__name__} escaped: {exc!r}\n{traceback.format_exc()}"
        return type(exc).__name__
    return "ok"


def _strs(names: list[str]) -> np.ndarray:
    return np.array([n.replace("\0", "?") for n in names], dtype=h5py.string_dtype())


def _mutate_json(value: Any, rng: random.Random) -> Any:
    """One structural change somewhere in a JSON value."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(sorted(value))
        choice = rng.random()
        if choice < 0.3:
            return {k: v for k, v in value.items() if k != key}
        if choice < 0.5:
            return {**value, key: rng.choice([None, 0, -1, "x", [], {}, 1e309, True])}
        return {**value, key: _mutate_json(value[key], rng)}
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        if rng.random() < 0.3:
            return value[:i] + value[i + 1 :]
        return value[:i] + [_mutate_json(value[i], rng)] + value[i + 1 :]
    return rng.choice([None, 0, 3, -2, "lstm", [], {}, "GRU", 2.5])


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0 and buf:
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del buf[rng.randrange(len(buf) + 1) :]
    elif kind == 2:
        at = rng.randrange(len(buf) + 1)
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    else:
        at = rng.randrange(max(len(buf), 1))
        buf[at : at + 4] = rng.choice(
            [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x80\x80\x80\x80"]
        )
    return bytes(buf)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, name, attr",
    [
        ("keras2_h5_full", "model.h5", "model_config"),
        ("keras2_bidirectional_lstm", "model.h5", "model_config"),
        ("keras2_h5_weights", "weights.h5", "layer_names"),
        ("keras2_rnn_cells", "rnn_stacked.h5", "model_config"),
        ("keras2_rnn_cells", "rnn_stacked_weights.h5", "layer_names"),
    ],
)
def test_fuzz_h5_attributes(tmp_path, case, name, attr):
    rng = random.Random(f"{case}/{attr}")
    source = LEGACY / case / name
    with h5py.File(source, "r") as f:
        original = f.attrs[attr]
        weights_group = f["model_weights"] if "model_weights" in f else f
        weight_names = {
            n: list(weights_group[n].attrs["weight_names"])
            for n in weights_group.attrs["layer_names"]
        }
    outcomes: dict[str, int] = {}
    for i in range(100):
        path = tmp_path / f"m{i % 4}.h5"
        shutil.copyfile(source, path)
        with h5py.File(path, "r+") as f:
            what = rng.random()
            if attr == "model_config" and what < 0.6:
                config = json.loads(original)
                text = (
                    json.dumps(_mutate_json(config, rng))
                    if what < 0.45
                    else _mutate_bytes(original.encode(), rng)
                    .replace(b"\0", b"?")
                    .decode("utf-8", "replace")
                )
                f.attrs[attr] = text
            elif what < 0.8:
                group = f["model_weights"] if "model_weights" in f else f
                layer = rng.choice(sorted(weight_names))
                names = _mutate_json(weight_names[layer], rng)
                if isinstance(names, list) and all(isinstance(n, str) for n in names):
                    group[layer].attrs["weight_names"] = _strs(names)
                else:
                    group[layer].attrs["weight_names"] = _strs([str(names)])
            else:
                names = _mutate_json(list(weight_names), rng)
                f.attrs["layer_names"] = _strs(
                    [str(n) for n in names] if isinstance(names, list) else [str(names)]
                )
        result = _check(lambda: stack_from_keras(path, layer_names=None))
        outcomes[result] = outcomes.get(result, 0) + 1
    assert sum(outcomes.values()) == 100 and len(outcomes) > 1, outcomes  # some damage is caught


@pytest.mark.slow
@pytest.mark.parametrize("case", ["keras2_savedmodel_notraces", "keras2_savedmodel"])
def test_fuzz_savedmodel_metadata(tmp_path, case):
    rng = random.Random(case)
    source = LEGACY / case / "saved_model"
    original = (source / "keras_metadata.pb").read_bytes()
    target = tmp_path / "saved_model"
    shutil.copytree(source, target)
    meta = read_keras_metadata(original)
    for _ in range(150):
        if rng.random() < 0.5:
            data = _mutate_bytes(original, rng)
        else:  # a well-formed proto whose JSON is damaged
            root = meta["root"][1]
            data = _metadata_proto(json.dumps(_mutate_json(root, rng)))
        (target / "keras_metadata.pb").write_bytes(data)
        _check(lambda: read_keras_metadata(data))
        _check(lambda: stack_from_keras(target, layer_names=["lstm"]))


def _metadata_proto(root_json: str) -> bytes:
    """A SavedMetadata with one node: ``root`` and this metadata."""

    def field(number: int, payload: bytes) -> bytes:
        return bytes([number << 3 | 2]) + _varint(len(payload)) + payload

    node = field(3, b"root") + field(4, b"_tf_keras_network") + field(5, root_json.encode())
    return field(1, node)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)
