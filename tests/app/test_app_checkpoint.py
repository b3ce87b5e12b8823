"""rnnfuse.app.checkpoint: atomic files, the latest pointer, optimizer and RNG round trips."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from rnnfuse.app import checkpoint as ckpt


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    ckpt.atomic_write(target, b"old")
    ckpt.atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]


def test_latest_points_at_the_newest_complete_checkpoint(tmp_path):
    model = {"w": torch.arange(6.0).view(2, 3)}
    for step in (1, 2, 3):
        ckpt.save_checkpoint(
            tmp_path,
            f"step-{step:08d}",
            model,
            {"t": torch.tensor([step])},
            {"epoch": step, "batch": 0},
        )
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000002", "step-00000003"]
    point = ckpt.load_latest(tmp_path)
    assert point.state["epoch"] == 3 and point.tensors["t"].item() == 3
    assert torch.equal(point.model["w"], model["w"])
    # the same name again never rewrites the directory latest.json names
    ckpt.save_checkpoint(
        tmp_path, "step-00000003", model, {"t": torch.tensor([4])}, {"epoch": 4, "batch": 0}
    )
    assert (
        json.loads((tmp_path / "latest.json").read_text())["checkpoint"]
        == "checkpoints/step-00000003-1"
    )


def test_missing_pieces_are_reported(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint to resume from"):
        ckpt.load_latest(tmp_path)
    directory = ckpt.save_checkpoint(
        tmp_path, "step-00000001", {"w": torch.ones(1)}, {}, {"epoch": 1}
    )
    (directory / "state.json").unlink()
    with pytest.raises(
        ckpt.CheckpointError, match="state.json: missing; the checkpoint is incomplete"
    ):
        ckpt.load_latest(tmp_path)


def test_model_file_keeps_metadata(tmp_path):
    path = tmp_path / "m.safetensors"
    ckpt.save_model_file(path, {"a": torch.ones(2)}, {"scale": 2.5, "config": {"seed": 1}})
    tensors, meta = ckpt.load_model_file(path)
    assert meta == {"scale": 2.5, "config": {"seed": 1}} and torch.equal(
        tensors["a"], torch.ones(2)
    )
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ckpt.CheckpointError, match="not a readable safetensors file"):
        ckpt.load_model_file(path)


def test_optimizer_state_round_trips_exactly():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(3):
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    plain, tensors = ckpt.optimizer_parts(opt.state_dict())
    plain = json.loads(json.dumps(plain))
    other = torch.optim.AdamW(model.parameters(), lr=0.5)
    other.load_state_dict(ckpt.optimizer_from_parts(plain, tensors))
    a, b = opt.state_dict(), other.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for index in a["state"]:
        for key, value in a["state"][index].items():
            assert torch.equal(value, b["state"][index][key])


def test_rng_states_round_trip():
    plain, torch_state = ckpt.capture_rng()
    plain = json.loads(json.dumps(plain))
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    ckpt.restore_rng(plain, torch_state)
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_new_checkpoint_directory_is_fsynced_before_latest_names_it(tmp_path, monkeypatch):
    events = []
    real_fsync_dir, real_atomic_write = ckpt._fsync_dir, ckpt.atomic_write
    monkeypatch.setattr(
        ckpt, "_fsync_dir", lambda d: (events.append(("fsync", d.name)), real_fsync_dir(d))
    )
    monkeypatch.setattr(
        ckpt,
        "atomic_write",
        lambda p, data: (events.append(("write", p.name)), real_atomic_write(p, data)),
    )
    ckpt.save_checkpoint(
        tmp_path, "step-00000001", {"w": torch.ones(1)}, {}, {"epoch": 1, "batch": 0}
    )
    assert ("fsync", "checkpoints") in events
    assert events.index(("fsync", "checkpoints")) < events.index(("write", "latest.json"))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"format": "rnnfuse-train/1"}', 'expected "checkpoint" to name a checkpoint directory'),
        (
            '{"format": "rnnfuse-train/1", "checkpoint": "checkpoints/step-00000001"}',
            'expected "sha256" to be an object',
        ),
        (
            '{"format": "rnnfuse-train/1", "checkpoint": "checkpoints/step-00000001", "sha256": {"state.json": "0"}}',
            "\"sha256\" lacks a hash for \\['model.safetensors', 'training.safetensors'\\]",
        ),
        ('{"format": "rnnfuse-tr', "not valid JSON"),
        ('"just a string"', "expected a JSON object, got str"),
    ],
)
def test_hand_edited_or_truncated_latest_json_is_a_checkpoint_error(tmp_path, text, problem):
    ckpt.save_checkpoint(tmp_path, "step-00000001", {"w": torch.ones(1)}, {}, {"epoch": 1})
    (tmp_path / "latest.json").write_text(text)
    with pytest.raises(ckpt.CheckpointError, match=f"latest.json: {problem}"):
        ckpt.load_latest(tmp_path)
