"""Data-parallel training with ``torch.distributed``, started by ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; with ``WORLD_SIZE`` > 1 :func:`setup` joins the process group (``gloo`` on
CPU, ``nccl`` when CUDA is available).  Every process builds the same windows, takes its
own shard of each epoch's permutation (:func:`shard`, like ``DistributedSampler``), and
DistributedDataParallel averages the gradients.  Rank 0 alone writes checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistEnv", "setup", "shard", "wrap", "any_flag", "gather_objects", "barrier", "teardown"]


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
        raise ValueError(f"environment variable {name}: expected an integer (set by torchrun), got {raw!r}") from None


def setup() -> DistEnv:
    """Read torchrun's environment; join the process group when there are several processes."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK/WORLD_SIZE: expected 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    if world == 1:
        return DistEnv()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return DistEnv(rank, world, local, device)


def shard(order: Tensor, env: DistEnv) -> Tensor:
    """This rank's part of a permutation: padded by wrapping to a multiple of the world
    size, then every ``world_size``-th entry from ``rank`` (so every rank has as many)."""
    if not env.active:
        return order
    total = -(-len(order) // env.world_size) * env.world_size
    padded = torch.cat([order, order[: total - len(order)]]) if total > len(order) else order
    return padded[env.rank :: env.world_size]


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
