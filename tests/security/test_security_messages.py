"""Crafted files that once ended in a traceback, ran without bound, left processes behind or
gave a misleading message; each now gets one clear line (see SECURITY.md).  Every crafted
file is made here."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pytest
from safetensors.torch import load_file, save_file

from rnnfuse.app import checkpoint as ckpt
from rnnfuse.app.config import DataConfig, ModelConfig, OptimConfig, RunConfig
from rnnfuse.app.data import DataError, load_series
from rnnfuse.app.model import build_model
from rnnfuse.app.windows import prepare
from rnnfuse.cli import main
from rnnfuse.convert.keras import stack_from_keras

SRC = str(Path(__file__).resolve().parents[2] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
TINY = RunConfig(
    model=ModelConfig(local_sizes=(4,), global_sizes=(4,)), optim=OptimConfig(epochs=1)
)
SMALL = ["--local-sizes", "4", "--global-sizes", "4", "--no-progress"]


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    return err


def _model_file(path: Path, config: RunConfig) -> Path:
    """A forecaster file as `rnnfuse train` writes it (random weights of ``config.model``)."""
    meta = {
        "format": ckpt.MODEL_FORMAT,
        "config": config.to_dict(),
        "scale": 1.0,
        "epoch": 1,
        "best_val_mae": 0.5,
    }
    ckpt.save_model_file(path, build_model(config.model).state_dict(), meta)
    return path


def _keras_zip(path: Path, config: object, weights: bytes = b"") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config) if not isinstance(config, bytes) else config)
        z.writestr("model.weights.h5", weights)
    return path


# ------------------------------------------------------------------ 6. tracebacks
@pytest.mark.parametrize(
    "config",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nested past Python's recursion limit
        {"class_name": "Sequential", "config": []},
        {
            "class_name": "Sequential",
            "config": {"layers": [{"class_name": "RNN", "config": "lstm"}]},
        },
    ],
    ids=["deep", "config-list", "rnn-config-string"],
)
def test_a_keras_config_of_the_wrong_shape_is_a_value_error(tmp_path, config):
    with pytest.raises(ValueError, match="config.json|a layer of config.json"):
        stack_from_keras(_keras_zip(tmp_path / "m.keras", config))


def _patched_zip(path: Path, offset_local: int, offset_central: int, value: int) -> Path:
    """``path`` with a 16-bit field of every local and central header set to ``value``."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", offset_local), (b"PK\x01\x02", offset_central)):
        start = data.find(signature)
        while start >= 0:
            data[start + offset : start + offset + 2] = struct.pack("<H", value)
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("field", ["encrypted", "method-99"])
def test_an_encrypted_or_unknown_compression_keras_zip_is_a_value_error(tmp_path, field):
    path = _keras_zip(tmp_path / "m.keras", {"class_name": "Sequential", "config": {"layers": []}})
    if field == "encrypted":
        _patched_zip(path, 6, 8, 0x1)  # general purpose flags: bit 0, encrypted
    else:
        _patched_zip(path, 8, 10, 99)  # compression method 99 (AES)
    with pytest.raises(ValueError, match="encrypted|compression method 99"):
        stack_from_keras(path)


def test_safetensors_metadata_nested_deep_is_a_one_line_error_in_inspect_and_predict(
    tmp_path, capsys
):
    path = _model_file(tmp_path / "m.safetensors", TINY)
    raw = {"format": ckpt.MODEL_FORMAT, "scale": 1.0}
    save_file(
        load_file(path),
        path,
        {**{k: json.dumps(v) for k, v in raw.items()}, "config": "[" * 100_000 + "]" * 100_000},
    )
    for argv in (["inspect", str(path)], ["predict", "--model", str(path)]):
        assert "nested" in _error(capsys, argv)


def test_a_time_column_of_plus_minus_1e308_is_a_data_error(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(
        "t,x\n" + "".join(f"{t},{k}\n" for k, t in enumerate(["-1.7e308", "0", "1.7e308"]))
    )
    with pytest.raises(DataError, match=r"line 2, column 't': expected a time within"):
        load_series(path, "x", "t", ())


def test_a_state_json_with_adam_betas_5_7_is_refused_on_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "1", "--steps", "2", *SMALL]) == 0
    capsys.readouterr()
    pointer = json.loads((out / "latest.json").read_text())
    state_path = out / pointer["checkpoint"] / "state.json"
    state = json.loads(state_path.read_text())
    state["optimizer"]["param_groups"][0]["betas"] = [5, 7]
    state_path.write_bytes(ckpt.json_bytes(state))
    pointer["sha256"]["state.json"] = (
        __import__("hashlib").sha256(state_path.read_bytes()).hexdigest()
    )
    (out / "latest.json").write_bytes(ckpt.json_bytes(pointer))
    err = _error(capsys, ["train", "--out", str(out), "--resume", "--epochs", "3", "--no-progress"])
    assert "betas: expected two numbers in [0, 1), got [5, 7]" in err


# ------------------------------------------------------------------ 7. work without bound, non-real dtypes
def test_a_model_asking_for_500000_global_blocks_runs_its_encoder_over_the_data_only(tmp_path):
    from rnnfuse.app.predict import load_model, predict_next
    from rnnfuse.stack import StackedRNN

    data = DataConfig(global_blocks=500_000, block=1, min_global_blocks=10)
    model, config, scale, _ = load_model(
        _model_file(tmp_path / "m.safetensors", RunConfig(data=data, model=TINY.model))
    )
    steps: list[int] = []
    for name, module in model.named_modules():
        if isinstance(module, StackedRNN) and "global" in name:
            module.register_forward_pre_hook(lambda _m, args: steps.append(args[0].shape[1]))
    series = load_series(None, config.data.column, config.data.time_column, config.data.covariates)
    started = time.monotonic()
    predict_next(model, config, scale, series)
    assert steps and max(steps) <= len(series), steps  # not 500,000 padded steps
    assert time.monotonic() - started < 30


def test_a_model_asking_for_a_horizon_of_100000_is_refused(tmp_path, capsys):
    data = DataConfig(horizon=100_000, period=100_000)
    model = _model_file(tmp_path / "m.safetensors", RunConfig(data=data, model=TINY.model))
    assert "data.horizon: expected an int in [1, 1000]" in _error(
        capsys, ["predict", "--model", str(model)]
    )


# ------------------------------------------------------------------ 8. processes left behind
def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if (
                int(stat.rsplit(")", 1)[1].split()[1]) == pid
                and "spawn_main" in (entry / "cmdline").read_text()
            ):
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_to_demo_ends_its_workers(tmp_path):
    argv = [
        sys.executable,
        "-m",
        "rnnfuse",
        "demo",
        "--out",
        str(tmp_path / "demo"),
        "--jobs",
        "2",
        "--steps",
        "100000",
        "--seeds",
        "1",
        "--fusions",
        "concat,sum",
        "--hybrids",
        "none",
        "--baselines",
        "none",
        "--refit",
        "none",
    ]
    demo = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = _children(demo.pid)
        assert len(workers) == 2, "the demo started no pool of 2 workers"
        demo.send_signal(signal.SIGTERM)
        demo.wait(30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers), "workers outlived the demo"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait(30)
        for pid in workers:  # the workers this test started, if the check failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ 9. messages that mislead
def test_a_time_column_with_a_time_zone_name_says_how_to_write_it(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("t,x\n2014-01-01 00:30:00 CET,1\n2014-01-01 01:30:00 CET,2\n")
    with pytest.raises(DataError, match="time-zone names like CET .* are not read"):
        load_series(path, "x", "t", ())


@pytest.mark.parametrize("value", ["1e200", "1e-200"])
def test_a_huge_or_tiny_target_says_rescale(tmp_path, value):
    path = tmp_path / "s.csv"
    path.write_text("x\n" + "".join(f"{k}{value[1:]}\n" for k in range(1, 400)))
    with pytest.raises(DataError, match="rescale the column"):
        prepare(
            load_series(path, "x", None, ()),
            DataConfig(
                horizon=2,
                period=1,
                local_steps=8,
                global_blocks=4,
                block=2,
                min_global_blocks=1,
                val_steps=20,
                test_steps=20,
            ),
        )


def test_a_covariate_of_1e308_is_refused_where_it_is_read(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("x,c\n" + "".join(f"{k % 7},{'1e308' if k == 50 else k}\n" for k in range(300)))
    with pytest.raises(
        DataError, match=r"line 52, column 'c': '1e308' is out of the range .*rescale"
    ):
        load_series(path, "x", None, ("c",))


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt.os, "fsync", full)
    target = tmp_path / "latest.json"
    with pytest.raises(OSError) as caught:
        ckpt.atomic_write(target, b"{}")
    assert caught.value.errno == errno.ENOSPC and str(target) in str(caught.value)


def test_a_bad_bidirectional_config_says_what_is_wrong(tmp_path):
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [{"class_name": "Bidirectional", "config": {"name": "bi", "layer": "lstm"}}]
        },
    }
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_group("layers")
    with pytest.raises(ValueError, match=r"Bidirectional layer 'bi': its \"layer\" is not"):
        stack_from_keras(_keras_zip(tmp_path / "m.keras", config, buffer.getvalue()))


def test_a_duplicated_csv_header_is_refused_naming_both_fields(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("x,x\n1,10\n2,20\n")
    with pytest.raises(
        DataError, match=r"names column 'x' \(--column\) 2 times \(fields \[1, 2\]\)"
    ):
        load_series(path, "x", None, ())
