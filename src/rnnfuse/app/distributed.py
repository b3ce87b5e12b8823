"""Data-parallel training with ``torch.distributed``, started by ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; with ``WORLD_SIZE`` > 1 :func:`setup` joins the process group (``gloo`` on
CPU, ``nccl`` when CUDA is available).  Every process builds the same windows, takes its
own shard of each epoch's permutation (:func:`epoch_sampler`, PyTorch's
``DistributedSampler``), and DistributedDataParallel averages the gradients.  Rank 0
alone writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DistributedSampler

__all__ = [
    "DistEnv",
    "setup",
    "epoch_sampler",
    "epoch_batches",
    "wrap",
    "any_flag",
    "gather_objects",
    "barrier",
    "teardown",
]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}: expected an integer (set by torchrun), got {raw!r}"
        ) from None


def setup() -> DistEnv:
    """Read torchrun's environment; join the process group when there are several processes."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"RANK/WORLD_SIZE: expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}"
        )
    if world == 1:
        return DistEnv()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistEnv(rank, world, local, device)


def epoch_sampler(dataset: Any, env: DistEnv, seed: int) -> DistributedSampler:
    """This rank's part of each epoch's order of ``dataset`` (anything with ``len``).

    After ``set_epoch(e)`` the order is ``torch.randperm`` drawn by a generator seeded with
    ``seed + e``, padded by wrapping to a multiple of the world size, then every
    ``world_size``-th entry from ``rank``: a function of (seed, epoch, rank, world size) only,
    so a resumed run redraws the order of any epoch exactly.  One process: the whole
    permutation.
    """
    return DistributedSampler(
        dataset,
        num_replicas=env.world_size,
        rank=env.rank,
        shuffle=True,
        seed=seed,
        drop_last=False,
    )


def epoch_batches(sampler: DistributedSampler, epoch: int, batch_size: int) -> list[list[int]]:
    """The batches of ``epoch`` in order (the last one may be smaller)."""
    sampler.set_epoch(epoch)
    return list(BatchSampler(sampler, batch_size, drop_last=False))


def wrap(model: nn.Module, env: DistEnv) -> nn.Module:
    """The model wrapped in DistributedDataParallel when distributed, else itself."""
    if not env.active:
        return model
    ids = [env.device.index] if env.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def any_flag(flag: bool, env: DistEnv) -> bool:
    """True on every rank when ``flag`` is true on any (used to stop all ranks together)."""
    if not env.active:
        return flag
    value = torch.tensor([1 if flag else 0], device=env.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every rank, in rank order (on every rank)."""
    if not env.active:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op on one process)."""
    if env.active:
        dist.barrier()


def teardown(env: DistEnv) -> None:
    """Leave the process group."""
    if env.active and dist.is_initialized():
        dist.destroy_process_group()
