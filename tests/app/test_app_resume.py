"""Killing `rnnfuse train` part-way and resuming gives the uninterrupted run's weights exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnfuse.app.checkpoint import CheckpointError, load_latest, load_model_file
from rnnfuse.app.config import ModelConfig, OptimConfig, RunConfig
from rnnfuse.app.training import StopSignal, Trainer

pytestmark = pytest.mark.slow  # kills a training run and resumes it

EPOCHS = 6
FLAGS = [
    "--local-sizes",
    "12,12",
    "--global-sizes",
    "12,12",
    "--fusion",
    "gated",
    "--seed",
    "7",
    "--no-progress",
]


def _train(out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rnnfuse", "train", "--out", str(out), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def _wait_for_first_epoch(out: Path, proc: subprocess.Popen) -> None:
    pointer = out / "latest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if pointer.exists() and json.loads(pointer.read_text())["epoch"] >= 1:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before its first checkpoint:\n{proc.stdout.read()}")
        time.sleep(0.01)
    pytest.fail("no checkpoint after 240 s")


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs by {(a[name] - b[name]).abs().max()}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    code, log = _finish(_train(out, "--epochs", str(EPOCHS), *FLAGS))
    assert code == 0, log
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_killed_run_resumes_to_the_same_weights(tmp_path, reference, sig):
    out = tmp_path / "run"
    proc = _train(out, "--epochs", str(EPOCHS), *FLAGS)
    _wait_for_first_epoch(out, proc)
    proc.send_signal(sig)
    code, log = _finish(proc)
    if sig == signal.SIGINT:
        assert code == 128 + signal.SIGINT, log
        assert "interrupted by SIGINT" in log and "--resume" in log
    else:
        assert code == -signal.SIGKILL
    saved = load_latest(out)  # verifies every file against its SHA-256: nothing half-written
    assert saved.state["progress"]["epoch"] < EPOCHS
    code, log = _finish(_train(out, "--resume"))
    assert code == 0, log
    assert f"resumed from {saved.directory} at epoch {saved.state['progress']['epoch'] + 1}" in log
    _assert_same_weights(load_latest(out).model, load_latest(reference).model)
    _assert_same_weights(
        load_model_file(out / "best.safetensors")[0],
        load_model_file(reference / "best.safetensors")[0],
    )
    final = load_latest(out).state["progress"]
    assert final["epoch"] == EPOCHS
    expected = [h["val_mae"] for h in load_latest(reference).state["progress"]["history"]]
    assert [h["val_mae"] for h in final["history"]] == expected


def test_mid_epoch_stop_resumes_exactly(tmp_path):
    """A real SIGINT, raised after optimizer step 30 (inside epoch 2), stops the run right
    after that step; the resumed run repeats the rest of the epoch and matches exactly."""
    config = RunConfig(
        model=ModelConfig(local_sizes=(8,), global_sizes=(8,)), optim=OptimConfig(epochs=3), seed=1
    )
    quiet = lambda _msg: None
    ref = Trainer(config, tmp_path / "ref", log=quiet, show_progress=False)
    ref.start()
    ref.run()
    steps_per_epoch = -(-len(ref.data.train) // config.optim.batch_size)
    assert steps_per_epoch < 30 < 2 * steps_per_epoch

    run = Trainer(config, tmp_path / "run", log=quiet, show_progress=False)
    count = []

    def interrupt_at_step_30(optimizer, args, kwargs) -> None:
        count.append(1)
        if len(count) == 30:
            signal.raise_signal(signal.SIGINT)

    run.optimizer.register_step_post_hook(interrupt_at_step_30)
    run.start()
    with StopSignal() as stop:
        result = run.run(stop)
    assert result.status == "interrupted" and result.exit_code == 130
    assert (result.progress.epoch, result.progress.batch) == (1, 30 - steps_per_epoch)
    again = Trainer(config, tmp_path / "run", log=quiet, show_progress=False)
    again.start(resume=True)
    assert (again.progress.epoch, again.progress.batch, again.progress.step) == (
        1,
        30 - steps_per_epoch,
        30,
    )
    again.run()
    _assert_same_weights(again.model.state_dict(), ref.model.state_dict())
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert again.optimizer.state_dict()["state"][0][key].equal(
            ref.optimizer.state_dict()["state"][0][key]
        )
    assert [h["val_mae"] for h in again.progress.history] == [
        h["val_mae"] for h in ref.progress.history
    ]


def test_resume_refuses_a_changed_configuration_and_a_fresh_start_refuses_an_old_run(tmp_path):
    config = RunConfig(
        model=ModelConfig(local_sizes=(4,), global_sizes=(4,)), optim=OptimConfig(epochs=1)
    )
    first = Trainer(config, tmp_path, log=lambda _: None, show_progress=False)
    first.start()
    first.run()
    with pytest.raises(CheckpointError, match="already holds a run"):
        Trainer(config, tmp_path, log=lambda _: None).start()
    other = RunConfig(
        model=ModelConfig(local_sizes=(4,), global_sizes=(4,)), optim=OptimConfig(epochs=1, lr=0.01)
    )
    with pytest.raises(CheckpointError, match="different configuration"):
        Trainer(other, tmp_path, log=lambda _: None).start(resume=True)


def test_corrupt_checkpoint_is_detected(tmp_path):
    config = RunConfig(
        model=ModelConfig(local_sizes=(4,), global_sizes=(4,)), optim=OptimConfig(epochs=1)
    )
    trainer = Trainer(config, tmp_path, log=lambda _: None, show_progress=False)
    trainer.start()
    trainer.run()
    point = load_latest(tmp_path)
    weights = point.directory / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{weights}: SHA-256 .* the file is corrupt"):
        load_latest(tmp_path)
    assert not [p for p in os.listdir(point.directory) if p.endswith(".tmp")]


def test_resume_accepts_threads_as_documented(tmp_path, capsys):
    from rnnfuse.cli import main

    config = RunConfig(
        model=ModelConfig(local_sizes=(4,), global_sizes=(4,)), optim=OptimConfig(epochs=1)
    )
    first = Trainer(config, tmp_path, log=lambda _: None, show_progress=False)
    first.start()
    first.run()
    threads = torch.get_num_threads()
    try:
        code = main(
            [
                "train",
                "--out",
                str(tmp_path),
                "--resume",
                "--threads",
                "2",
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err


def test_resume_with_more_epochs_stretches_the_cosine_schedule(tmp_path):
    """Extending --epochs on --resume re-plans the cosine over the new total: each epoch's
    learning rate is the closed-form cosine of the new length, not a restarted cycle."""
    import math

    tiny = ModelConfig(local_sizes=(4,), global_sizes=(4,))
    first = Trainer(
        RunConfig(model=tiny, optim=OptimConfig(epochs=1)),
        tmp_path,
        log=lambda _: None,
        show_progress=False,
    )
    first.start()
    first.run()
    longer = RunConfig(model=tiny, optim=OptimConfig(epochs=4))
    resumed = Trainer(longer, tmp_path, log=lambda _: None, show_progress=False)
    resumed.start(resume=True)
    resumed.run()
    base, low = longer.optim.lr, longer.optim.lr * 0.01
    expected = [low + (base - low) * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 4)]
    used = [record["lr"] for record in resumed.progress.history[1:]]
    assert used == pytest.approx(expected, rel=1e-12)
