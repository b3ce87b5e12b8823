"""Model files that point elsewhere, declare more than they hold or make the reader search
without end (see SECURITY.md).  Every crafted file is made here.

Tests about memory or time run the reader in a subprocess under an address-space limit
(``RLIMIT_AS``) and a timeout, so that an attempt to allocate or to search every order
fails the test instead of stalling the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from rnnfuse.convert.keras import stack_from_keras

SRC = str(Path(__file__).resolve().parents[2] / "src")
NAMES = ["lstm/lstm_cell/kernel:0", "lstm/lstm_cell/recurrent_kernel:0", "lstm/lstm_cell/bias:0"]


def _keras2_weights(path: Path, kernel=None, names=NAMES, **kernel_options) -> Path:
    """A Keras 2 weights-only file of one LSTM(2) over 3 features; ``kernel_options`` make its
    kernel (``h5py.Group.create_dataset`` arguments) unless ``kernel`` is given."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"lstm"]
        group = f.create_group("lstm")
        group.attrs["weight_names"] = [n.encode() for n in names]
        if kernel is not None:
            group[NAMES[0]] = kernel
        else:
            group.create_dataset(NAMES[0], **(kernel_options or {"data": np.zeros((3, 8), "f4")}))
        group[NAMES[1]] = np.zeros((2, 8), "f4")
        group[NAMES[2]] = np.zeros(8, "f4")
    return path


def _limited(
    code: str, tmp_path: Path, extra_bytes: int = 1 << 30, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose address space may grow ``extra_bytes`` past its
    imports, killed after ``timeout`` seconds (a ``TimeoutExpired`` fails the test)."""
    script = textwrap.dedent(f"""
        import resource
        import rnnfuse.convert.keras, rnnfuse.cli, h5py, torch
        base = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (base + {extra_bytes}, base + {extra_bytes}))
    """) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=timeout,
    )


_LOAD = """
    from rnnfuse.convert.keras import stack_from_keras
    try:
        stack_from_keras({path!r})
    except ValueError as exc:
        print("REFUSED", exc)
"""


# ------------------------------------------------------------------ 1. files that name other files
def test_a_keras2_h5_with_an_external_link_is_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["kernel"] = np.ones((3, 8), "f4")
    path = _keras2_weights(tmp_path / "model.h5", kernel=h5py.ExternalLink(str(other), "kernel"))
    with pytest.raises(ValueError, match="external link to .*other.h5"):
        stack_from_keras(path)


@pytest.mark.slow
def test_a_keras2_h5_with_external_raw_storage_is_refused_before_reading(tmp_path):
    fifo = tmp_path / "fifo"  # a reader that reads the external file would block on it for ever
    os.mkfifo(fifo)
    path = _keras2_weights(
        tmp_path / "model.h5", shape=(3, 8), dtype="f4", external=[(str(fifo), 0, 96)]
    )
    result = _limited(_LOAD.format(path=str(path)), tmp_path, timeout=60)
    assert "REFUSED" in result.stdout and "external files" in result.stdout, (
        result.stdout + result.stderr
    )


def test_a_keras2_h5_with_a_virtual_dataset_is_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["kernel"] = np.ones((3, 8), "f4")
    layout = h5py.VirtualLayout(shape=(3, 8), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), "kernel", shape=(3, 8))
    path = tmp_path / "model.h5"
    _keras2_weights(path)
    with h5py.File(path, "r+") as f:
        del f[f"lstm/{NAMES[0]}"]
        f.create_virtual_dataset(f"lstm/{NAMES[0]}", layout)
    with pytest.raises(ValueError, match="virtual dataset"):
        stack_from_keras(path)


def test_a_keras3_weights_file_inside_a_keras_zip_may_not_link_out(tmp_path):
    other = tmp_path / "secret.h5"
    with h5py.File(other, "w") as f:
        f["vars/0"] = np.ones((3, 8), "f4")
    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as f:
        f["layers/lstm/cell"] = h5py.ExternalLink(str(other), "/")
    config = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "LSTM", "config": {"name": "lstm", "units": 2}}]},
    }
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.write(weights, "model.weights.h5")
    with pytest.raises(ValueError, match="external link"):
        stack_from_keras(path)


# ------------------------------------------------------------------ 4. declared shapes, repeated datasets
@pytest.mark.slow
@pytest.mark.parametrize(
    "side", [200_000, 20_000]
)  # 149 GiB (over any bound), 1.5 GiB (not in the file)
def test_a_never_written_kernel_declaring_gigabytes_is_refused_before_allocating(tmp_path, side):
    path = _keras2_weights(tmp_path / "model.h5", shape=(side, side), dtype="f4", chunks=(64, 64))
    assert path.stat().st_size < 64 * 1024
    result = _limited(_LOAD.format(path=str(path)), tmp_path)
    assert "REFUSED" in result.stdout and "refused before allocating" in result.stdout, (
        result.stdout + result.stderr
    )


@pytest.mark.slow
def test_a_dataset_listed_2000_times_is_refused(tmp_path):
    big = np.zeros((1000, 1000), "f4")  # 4 MB, listed 2,000 times: 8 GB if read each time
    path = _keras2_weights(tmp_path / "model.h5", kernel=big, names=[NAMES[0]] * 2000)
    result = _limited(_LOAD.format(path=str(path)), tmp_path)
    assert "REFUSED" in result.stdout and "same dataset" in result.stdout, (
        result.stdout + result.stderr
    )


def test_a_hard_linked_dataset_in_a_keras3_file_is_refused(tmp_path):
    path = tmp_path / "model.weights.h5"
    with h5py.File(path, "w") as f:
        f["layers/lstm/cell/vars/0"] = np.zeros((3, 8), "f4")
        f["layers/lstm/cell/vars/1"] = f["layers/lstm/cell/vars/0"]
        f["layers/lstm/cell/vars/2"] = np.zeros(8, "f4")
    with pytest.raises(ValueError, match="second link"):
        stack_from_keras(path)


@pytest.mark.slow
@pytest.mark.parametrize("member", ["config.json", "model.weights.h5"])
def test_a_keras_zip_member_inflating_200_mb_from_little_is_refused(tmp_path, member):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open(member, "w", force_zip64=True) as out:
            block = b" " * (1 << 20)
            for _ in range(200):
                out.write(block)
        z.writestr("model.weights.h5" if member == "config.json" else "config.json", b"{}")
    assert path.stat().st_size < 2 << 20
    result = _limited(_LOAD.format(path=str(path)), tmp_path, extra_bytes=100 << 20)
    assert "REFUSED" in result.stdout and "declares" in result.stdout, result.stdout + result.stderr


# ------------------------------------------------------------------ 5. the layer order of a weights-only file
def _same_shape_layers(path: Path, names: list[str], dead_end: str) -> Path:
    """Keras 3 ``.weights.h5`` of LSTM(4) layers over 4 features named ``names``, and one,
    ``dead_end``, that reads 7 features (which no layer writes): no order chains."""
    with h5py.File(path, "w") as f:
        for name in names + [dead_end]:
            f[f"layers/{name}/cell/vars/0"] = np.zeros((7 if name == dead_end else 4, 16), "f4")
            f[f"layers/{name}/cell/vars/1"] = np.zeros((4, 16), "f4")
            f[f"layers/{name}/cell/vars/2"] = np.zeros(16, "f4")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["4 classes of 6", "10 distinct names"])
def test_the_layer_order_is_decided_without_trying_every_order(tmp_path, shape):
    if shape == "4 classes of 6":  # 24! / 6!^4 = 2.3e12 interleavings
        names = [f"{c}{'' if k == 0 else f'_{k}'}" for c in "abcd" for k in range(6)]
    else:  # 10! orders
        names = [f"layer{c}" for c in "abcdefghij"]
    path = _same_shape_layers(tmp_path / "m.weights.h5", names, "zz")
    started = time.monotonic()
    result = _limited(_LOAD.format(path=str(path)), tmp_path, timeout=60)
    assert "REFUSED" in result.stdout and "layer order" in result.stdout, (
        result.stdout + result.stderr
    )
    assert time.monotonic() - started < 30


def test_a_unique_order_among_many_classes_is_still_found(tmp_path):
    path = tmp_path / "m.weights.h5"
    sizes = [(3, 5), (5, 6), (6, 7), (7, 8)]  # gru_1 (5->6) must follow lstm (3->5), etc.
    with h5py.File(path, "w") as f:
        for name, (n_in, units) in zip(["lstm", "gru", "lstm_1", "gru_1"], sizes):
            gates = 4 if name.startswith("lstm") else 3
            f[f"layers/{name}/cell/vars/0"] = np.zeros((n_in, gates * units), "f4")
            f[f"layers/{name}/cell/vars/1"] = np.zeros((units, gates * units), "f4")
            f[f"layers/{name}/cell/vars/2"] = np.zeros(
                (2, gates * units) if gates == 3 else gates * units, "f4"
            )
    assert stack_from_keras(path).hidden_sizes == (5, 6, 7, 8)


# ------------------------------------------------------------------ 7. non-real dtypes
def test_a_complex64_kernel_is_refused(tmp_path):
    path = _keras2_weights(tmp_path / "model.h5", kernel=np.zeros((3, 8), "c8"))
    with pytest.raises(ValueError, match="complex64"):
        stack_from_keras(path)
