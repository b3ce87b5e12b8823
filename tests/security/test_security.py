"""What a model file, a data file or a setting cannot make rnnfuse do (see SECURITY.md).

Every crafted file is made here.  Where a test is about memory it runs in a subprocess under
an address-space limit (``RLIMIT_AS``), so that an attempt to allocate fails the test instead
of exhausting the machine.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rnnfuse import LSTMCell, LSTMState, MultiEncoder, StackedRNN, concat_states, sum_states
from rnnfuse.app import checkpoint as ckpt
from rnnfuse.app.checkpoint import (
    CheckpointError,
    load_latest,
    remove_stale_temporaries,
    save_model_file,
)
from rnnfuse.app.config import (
    ConfigError,
    ModelConfig,
    OptimConfig,
    RunConfig,
    available_cpus,
    capped_threads,
)
from rnnfuse.app.data import DataError, load_csv
from rnnfuse.app.model import build_model
from rnnfuse.app.runlock import RunLock, RunLockedError
from rnnfuse.app.training import Trainer, TrainingError, _checked_progress
from rnnfuse.cli import main
from rnnfuse.io import write_safetensors
from rnnfuse.seq2seq import Seq2Seq

SRC = str(Path(__file__).resolve().parents[2] / "src")
TINY = RunConfig(
    model=ModelConfig(local_sizes=(4,), global_sizes=(4,)), optim=OptimConfig(epochs=1)
)
SMALL_FLAGS = ["--local-sizes", "4", "--global-sizes", "4", "--no-progress"]


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    return err


def _model_file(path: Path, config: RunConfig, tensors: dict | None = None) -> Path:
    """A forecaster file as `rnnfuse train` writes it (weights of ``TINY`` unless given)."""
    weights = build_model(TINY.model).state_dict() if tensors is None else tensors
    meta = {
        "format": ckpt.MODEL_FORMAT,
        "config": config.to_dict(),
        "scale": 1.0,
        "epoch": 1,
        "best_val_mae": 0.5,
    }
    save_model_file(path, weights, meta)
    return path


def _limited(code: str, limit_bytes: int, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter whose address space is capped at ``limit_bytes``
    (after its imports); ``{BASE}`` in ``code`` is replaced by the size reached after them."""
    script = textwrap.dedent(f"""
        import resource, sys
        import rnnfuse.app.commands, rnnfuse.app.predict, rnnfuse.app.training, rnnfuse.cli, torch
        torch.set_num_threads(1)
        base = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        limit = {limit_bytes} if {limit_bytes} > base else base + {limit_bytes}
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    """) + textwrap.dedent(code)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )


# ------------------------------------------------------------------ 1. paths come from the user
@pytest.mark.parametrize("named", ["absolute", "relative"])
def test_predict_never_opens_the_path_a_model_names(tmp_path, capsys, named):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:SECRET-CONTENT\n")
    path = str(secret) if named == "absolute" else "../secret.txt"
    config = RunConfig(
        data=TINY.data.__class__(csv=path, column="x", time_column=None), model=TINY.model
    )
    (tmp_path / "run").mkdir()
    model = _model_file(tmp_path / "run" / "best.safetensors", config)
    err = _error(capsys, ["predict", "--model", str(model)])
    assert "--csv" in err and "SECRET" not in err and "root" not in err


# ------------------------------------------------------------------ 2. sizes checked before allocating
@pytest.mark.slow
def test_a_model_file_asking_for_huge_layers_is_refused_before_allocating(tmp_path):
    huge = RunConfig(
        model=ModelConfig(
            local_sizes=(4096,) * 32, global_sizes=(4096,) * 32, decoder_sizes=(4096,) * 32
        )
    )
    model = _model_file(tmp_path / "best.safetensors", huge)  # 32 layers of 4096: ~26 GB if built
    result = _limited(
        f"""
        from rnnfuse.cli import main
        codes = [main(["predict", "--model", {str(model)!r}]), main(["inspect", {str(model)!r}])]
        print("codes", codes)
    """,
        3 << 30,
        tmp_path,
    )
    assert "codes [2, 2]" in result.stdout, result.stderr[-2000:]
    assert (
        "does not match its configuration" in result.stderr and "MemoryError" not in result.stderr
    )


def test_a_model_file_asking_for_40000_units_is_refused_by_its_config(tmp_path, capsys):
    raw = TINY.to_dict()
    raw["model"]["local_sizes"] = [40000]
    meta = {"format": ckpt.MODEL_FORMAT, "config": raw, "scale": 1.0}
    path = tmp_path / "best.safetensors"
    save_model_file(path, build_model(TINY.model).state_dict(), meta)
    assert "model.local_sizes: expected an int in [1, 4096], got 40000" in _error(
        capsys, ["predict", "--model", str(path)]
    )


@pytest.mark.slow
def test_a_stack_file_asking_for_hidden_100000_is_refused_before_allocating(tmp_path):
    stack = StackedRNN(3, [4, 4])
    path = tmp_path / "stack.safetensors"
    config = {
        "kind": "StackedRNN",
        "layers": [
            {"kind": "lstm", "input_size": 3, "hidden_size": 100000},
            {"kind": "lstm", "input_size": 100000, "hidden_size": 4},
        ],
        "backward_layers": [],
        "bidirectional": False,
        "batch_first": True,
        "dropout": 0.0,
        "variational_dropout": False,
        "residual": False,
    }
    write_safetensors(
        path, stack.state_dict(), {"format": "rnnfuse", "version": 1, "config": config}
    )
    result = _limited(
        f"""
        import rnnfuse
        from rnnfuse.cli import main
        try:
            rnnfuse.load({str(path)!r})
        except ValueError as exc:
            print("load refused:", exc)
        print("inspect", main(["inspect", {str(path)!r}]))
    """,
        3 << 30,
        tmp_path,
    )
    assert "load refused:" in result.stdout and "wrong shape" in result.stdout, result.stderr[
        -2000:
    ]
    assert "inspect 2" in result.stdout and "MemoryError" not in result.stderr


def test_devices_are_refused_as_model_index_and_checkpoint_files(tmp_path, capsys):
    from rnnfuse.tf1.checkpoint import CheckpointError as TF1Error
    from rnnfuse.tf1.checkpoint import read_checkpoint

    for name in ("model.safetensors", "ckpt.index"):
        (tmp_path / name).symlink_to("/dev/zero")
    assert "not a regular file" in _error(
        capsys, ["predict", "--model", str(tmp_path / "model.safetensors")]
    )
    assert "nor a file" in _error(
        capsys, ["inspect", str(tmp_path / "model.safetensors")]
    )  # one line, nothing read
    with pytest.raises(TF1Error, match="not a regular file"):
        read_checkpoint(tmp_path / "ckpt")
    assert "not a regular file" in _error(capsys, ["inspect", str(tmp_path / "ckpt")])


# ------------------------------------------------------------------ 3. settings: finite, in range
@pytest.mark.parametrize(
    "flags, setting",
    [
        (["--lr", "inf"], "optim.lr"),
        (["--lr", "nan"], "optim.lr"),
        (["--grad-clip", "nan"], "optim.grad_clip"),
        (["--gamma", "nan"], "optim.gamma"),
        (["--weight-decay", "nan"], "optim.weight_decay"),
    ],
)
def test_non_finite_settings_are_refused_naming_the_setting(tmp_path, capsys, flags, setting):
    err = _error(capsys, ["train", "--out", str(tmp_path / "run"), *flags])
    assert setting in err and not (tmp_path / "run" / "best.safetensors").exists()


def test_a_config_file_with_lr_1e400_is_refused(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"optim": {"lr": 1e400}}')
    assert "optim.lr: expected a positive number, got inf" in _error(
        capsys, ["train", "--out", str(tmp_path / "r"), "--config", str(path)]
    )


def test_a_non_finite_loss_stops_training_and_never_becomes_best(tmp_path):
    trainer = Trainer(TINY, tmp_path, log=lambda _m: None, show_progress=False)
    trainer.start()
    trainer.ddp = lambda inputs, targets, **kw: targets * float("nan")  # a diverged model
    with pytest.raises(TrainingError, match="the training loss became nan at epoch 1, batch 1"):
        trainer.run()
    assert not (tmp_path / "best.safetensors").exists() and trainer.progress.best_metric is None


# ------------------------------------------------------------------ 4. one writer per run directory
@pytest.mark.slow
def test_two_concurrent_runs_the_second_is_refused_and_sigkill_releases_the_lock(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "rnnfuse",
        "train",
        "--out",
        str(out),
        "--epochs",
        "1000",
        *SMALL_FLAGS,
    ]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while (
            time.monotonic() < deadline and not (out / "latest.json").exists()
        ):  # a first epoch saved
            time.sleep(0.2)
        assert _lock_holder(out) == str(first.pid)
        second = subprocess.run(
            [*argv[: -len(SMALL_FLAGS) - 2], "--resume"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert (
            second.returncode == 2
            and f"in use by another `rnnfuse train` (PID {first.pid})" in second.stderr
        )
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        with RunLock(out):  # the OS released the killed run's lock
            pass
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)


def _lock_holder(out: Path) -> str:
    try:
        return (out / ".lock").read_text().strip()
    except OSError:
        return ""


def test_a_held_lock_is_refused_in_process(tmp_path, capsys):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
            RunLock(tmp_path).acquire()
        assert f"PID {os.getpid()}" in _error(
            capsys, ["train", "--out", str(tmp_path), *SMALL_FLAGS]
        )


# ------------------------------------------------------------------ 5. gaps in the time column
def test_absent_weeks_are_filled_and_reported(tmp_path):
    start = dt.date(1990, 1, 6)
    rows = [
        f"{(start + dt.timedelta(weeks=k)).isoformat()},{k}"
        for k in range(900)
        if not 400 <= k < 500
    ]
    path = tmp_path / "weekly.csv"
    path.write_text("week,v\n" + "\n".join(rows) + "\n")
    series = load_csv(path, "v", "week")
    assert len(series) == 900 and series.missing == 100 and series.longest_gap == 100
    assert "100 of them absent time steps (step 7 days)" in series.describe()
    assert series.labels[400] == (start + dt.timedelta(weeks=400)).isoformat()


def test_an_irregular_time_column_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("t,v\n1,1\n2,2\n3,3\n4.5,4\n5,5\n6,6\n")
    with pytest.raises(
        DataError, match=rf"{path}, line 5, column 't': the times are not on one grid"
    ):
        load_csv(path, "v", "t")


# ------------------------------------------------------------------ 6. threads
def test_threads_are_capped_at_the_cpus(capsys):
    said: list[str] = []
    assert capped_threads(10_000, said.append) == available_cpus() and "using" in said[0]
    before = torch.get_num_threads()
    try:
        Trainer(RunConfig(model=TINY.model, threads=4000), None, log=said.append)
        assert torch.get_num_threads() <= available_cpus()
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="threads: expected an int in"):
        RunConfig.from_dict({"threads": 10_000})


# ------------------------------------------------------------------ 7. latest.json and progress
@pytest.mark.parametrize(
    "where", ["../other_run/checkpoints/step-1", "/tmp/step-1", "checkpoints/../../x"]
)
def test_latest_json_may_only_name_a_checkpoint_inside_out(tmp_path, where):
    out = tmp_path / "run"
    out.mkdir()
    pointer = {
        "format": ckpt.FORMAT,
        "checkpoint": where,
        "sha256": {n: "0" * 64 for n in ckpt._FILES},
    }
    (out / "latest.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="must name a directory in"):
        load_latest(out)


@pytest.mark.parametrize(
    "field, value", [("epoch", -5), ("batch", 10**9), ("step", "3"), ("best_metric", float("nan"))]
)
def test_progress_out_of_range_is_refused(field, value):
    raw = {
        "epoch": 1,
        "batch": 0,
        "step": 10,
        "loss_sum": 0.0,
        "loss_count": 0,
        "best_metric": 0.5,
        "best_epoch": 1,
        "history": [],
        field: value,
    }
    with pytest.raises(ValueError, match=f"progress.{field}"):
        _checked_progress(raw, samples=640, batch_size=64)


# ------------------------------------------------------------------ 8. one-line errors
def test_a_huge_csv_field_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "big.csv"
    path.write_text("v\n1\n" + "9" * 200_000 + "\n")
    err = _error(
        capsys, ["train", "--out", str(tmp_path / "r"), "--csv", str(path), "--column", "v"]
    )
    assert f"{path}, line 3: not valid CSV (a field longer than 131,072 characters)" in err


@pytest.mark.parametrize(
    "flags, setting",
    [(["--seed", str(2**70)], "seed"), (["--decoder-sizes", "100000"], "model.decoder_sizes")],
)
def test_out_of_range_integers_are_one_line_errors(tmp_path, capsys, flags, setting):
    assert f"{setting}: expected an int in" in _error(
        capsys, ["train", "--out", str(tmp_path / "r"), *flags]
    )


def test_a_config_csv_that_is_not_a_string_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"data": {"csv": 5}}')
    assert "data.csv: expected a non-empty string or null, got 5" in _error(
        capsys, ["train", "--out", str(tmp_path / "r"), "--config", str(path)]
    )


def test_a_checkpoint_that_passes_its_hash_but_lacks_keys_is_refused(tmp_path):
    trainer = Trainer(TINY, tmp_path, log=lambda _m: None, show_progress=False)
    trainer.start()
    trainer.run()
    pointer = json.loads((tmp_path / "latest.json").read_text())
    state_path = tmp_path / pointer["checkpoint"] / "state.json"
    state = json.loads(state_path.read_text())
    del state["optimizer"]
    data = ckpt.json_bytes(state)
    state_path.write_bytes(data)
    pointer["sha256"]["state.json"] = __import__("hashlib").sha256(data).hexdigest()
    (tmp_path / "latest.json").write_text(json.dumps(pointer))
    again = Trainer(TINY, tmp_path, log=lambda _m: None, show_progress=False)
    with pytest.raises(CheckpointError, match="incomplete or invalid .*KeyError"):
        again.start(resume=True)


@pytest.mark.slow
def test_a_large_csv_is_streamed_not_read_whole(tmp_path):
    path = tmp_path / "large.csv"
    line = "x" * 100_000 + ",1\n"  # a wide ignored column: 250 MB in 2,500 rows
    with path.open("w") as handle:
        handle.write("pad,v\n")
        for _ in range(2_500):
            handle.write(line)
    result = _limited(
        f"""
        from rnnfuse.app.data import load_csv
        print("rows", len(load_csv({str(path)!r}, "v")))
    """,
        200 << 20,
        tmp_path,
    )  # 200 MB above the imports: less than the file
    assert "rows 2500" in result.stdout, result.stderr[-2000:]


# ------------------------------------------------------------------ 9. library edges
def test_fusion_refuses_one_stack_state():
    _, state = StackedRNN(3, [4, 4])(torch.randn(2, 5, 3))
    for fuse in (sum_states, concat_states):
        with pytest.raises(
            TypeError,
            match=r"expected a list of states, one per encoder, e.g. \[state_a, state_b\]",
        ):
            fuse(state)
    assert len(sum_states([state, state])) == 2
    fw_bw = (state, state)  # a bidirectional state: fusing its two directions stays allowed
    assert concat_states(fw_bw)[0].h.shape == (2, 8)


def test_seq2seq_and_stack_edges_name_the_argument():
    enc = MultiEncoder({"a": StackedRNN(3, [4]), "b": StackedRNN(3, [4])})
    with pytest.raises(ValueError, match="output_size: expected a positive int, got 0"):
        Seq2Seq(enc, StackedRNN(1, [8]), 0)
    with pytest.raises(
        ValueError,
        match=r"decoder: its initial state must have sizes .*c=4.* fused state has sizes .*c=8",
    ):
        Seq2Seq(enc, StackedRNN(1, [4]), 1)
    gru = StackedRNN(3, [4], cell="gru")
    with pytest.raises(
        ValueError,
        match=r"^initial_state: does not match the state for x \(batch 2\); the states differ at "
        r"state\[0\]: batch size 2 against 3",
    ) as info:
        gru(torch.randn(2, 5, 3), initial_state=(torch.zeros(3, 4),))
    assert "initial_state and initial_state" not in str(info.value)
    with pytest.raises(ValueError, match="forget_bias: expected a finite float, got nan"):
        LSTMCell(3, 4, forget_bias=float("nan"))
    with pytest.warns(UserWarning, match="no effect on a one-layer stack"):  # as torch.nn.LSTM does
        StackedRNN(3, [4], dropout=0.5)


# ------------------------------------------------------------------ 10. housekeeping
def test_run_files_follow_the_umask_and_stale_temporaries_are_removed(tmp_path):
    old = os.umask(0o022)
    try:
        ckpt.atomic_write(tmp_path / "a.json", b"{}")
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    (tmp_path / "checkpoints" / "step-1").mkdir(parents=True)
    stale = [
        tmp_path / ".latest.json.abc.tmp",
        tmp_path / "checkpoints" / "step-1" / ".state.json.x.tmp",
    ]
    for path in stale:
        path.write_text("half")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert not any(p.exists() for p in stale) and (tmp_path / "a.json").exists()


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "--out: expected a run directory, got ''" in _error(capsys, ["train", "--out", ""])
    assert not list(tmp_path.iterdir())


def test_a_one_layer_stack_state_is_not_taken_for_a_list_of_states():
    """A one-layer LSTM stack state (a tuple of one LSTMState) is refused too, not fused with itself."""
    state = (LSTMState(torch.zeros(2, 4), torch.zeros(2, 4)),)
    with pytest.raises(TypeError, match="one stack state"):
        sum_states(state)
