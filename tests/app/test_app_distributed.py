"""Two-process data-parallel training with torchrun (gloo on CPU), then a resume."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnfuse.app.checkpoint import load_latest
from rnnfuse.app.distributed import DistEnv, epoch_batches, epoch_sampler

pytestmark = pytest.mark.slow  # torchrun, two processes

TINY = ["--local-sizes", "6", "--global-sizes", "6", "--no-progress"]


def _torchrun() -> str:
    found = Path(sys.executable).with_name("torchrun")
    if found.exists():
        return str(found)
    path = shutil.which("torchrun")
    if path is None:
        pytest.skip("torchrun is not installed next to this Python")
    return path


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        _torchrun(),
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "rnnfuse",
        "train",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_two_process_run_writes_one_valid_checkpoint_and_resumes(tmp_path):
    out = tmp_path / "ddp"
    done = _run(out, "--epochs", "1", *TINY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("epoch 1/1") == 1  # rank 0 alone reports
    point = load_latest(out)  # hashes checked
    assert point.state["world_size"] == 2
    assert {"rng.torch.0", "rng.torch.1"} <= set(point.tensors)
    train_windows = 1574
    per_rank_batches = math.ceil(math.ceil(train_windows / 2) / 64)
    assert point.state["progress"]["step"] == per_rank_batches
    assert len(list((out / "checkpoints").iterdir())) == 1
    resumed = _run(out, "--resume", "--epochs", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed from" in resumed.stdout and "epoch 2/2" in resumed.stdout
    assert load_latest(out).state["progress"]["epoch"] == 2


def test_shards_cover_the_permutation_with_equal_sizes():
    data = list(range(11))
    parts = [list(epoch_sampler(data, DistEnv(rank=r, world_size=3), seed=0)) for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]
    assert set(sum(parts, [])) == set(range(11))
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0)).tolist()
    assert list(epoch_sampler(data, DistEnv(), seed=0)) == order


def test_each_epochs_order_is_a_function_of_seed_and_epoch_only():
    """What exact resume rests on: seed + epoch draws the permutation (as before the sampler),
    padded by wrapping and strided by rank; a fresh sampler redraws any epoch's batches."""
    data, seed, epoch = list(range(11)), 5, 3
    order = torch.randperm(11, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
    padded = order + order[:1]
    for rank in range(2):
        sampler = epoch_sampler(data, DistEnv(rank=rank, world_size=2), seed)
        torch.manual_seed(123)  # the global RNG plays no part
        assert epoch_batches(sampler, epoch, 4) == [padded[rank::2][:4], padded[rank::2][4:]]
        fresh = epoch_sampler(data, DistEnv(rank=rank, world_size=2), seed)
        assert epoch_batches(fresh, epoch, 4) == epoch_batches(sampler, epoch, 4)
