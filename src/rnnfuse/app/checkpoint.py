"""Checkpoints that survive a kill at any moment.

Layout of a run directory::

    config.json                      the run's configuration
    best.safetensors                 the model with the best validation MAE (+ metadata)
    latest.json                      points at the newest complete checkpoint, with SHA-256s
    checkpoints/step-00000042/
        model.safetensors            model weights
        training.safetensors         optimizer tensors and the torch RNG state of every rank
        state.json                   epoch, batch, optimizer/scheduler state, RNG, config, history

Every file is written to a temporary name, flushed, ``fsync``-ed and renamed over its target
(``os.replace``), with the permissions of a file the user creates (``0666`` less the umask:
``0644`` by default), like every other file of a run.  Temporary files a kill left behind are
removed by :func:`remove_stale_temporaries` when the next run starts.  A checkpoint directory is
complete before ``latest.json`` names it, so a crash leaves either the old or the new checkpoint in
force, never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import load_file
from torch import Tensor

from .._files import MIB, NotRegularFileError, loads_json, read_regular_file
from ..io import MAX_FILE_BYTES, read_safetensors_metadata, safetensors_bytes
from .rundir import check_real_dir

__all__ = [
    "MODEL_FORMAT",
    "Checkpoint",
    "CheckpointError",
    "atomic_write",
    "json_bytes",
    "save_model_file",
    "load_model_file",
    "save_checkpoint",
    "load_latest",
    "remove_stale_temporaries",
    "file_mode",
    "capture_rng",
    "restore_rng",
    "optimizer_parts",
    "optimizer_from_parts",
]

FORMAT = "rnnfuse-train/1"  # latest.json and state.json
MODEL_FORMAT = "rnnfuse-forecaster/1"  # best.safetensors: a model `rnnfuse predict` reads
_FILES = ("model.safetensors", "training.safetensors", "state.json")
MAX_JSON_BYTES = 64 * MIB  # latest.json, state.json, config.json


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, incomplete or does not match its recorded hash."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: its directory, model tensors, training tensors and state."""

    directory: Path
    model: dict[str, Tensor]
    tensors: dict[str, Tensor]
    state: dict[str, Any]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file, flush, fsync, ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())  # mkstemp's 0600 would hide the run from the group
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not exc.filename:  # a failed write names no file: name it
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise
    _fsync_dir(path.parent)


def file_mode() -> int:
    """The mode of a new file under the process's umask: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The umask, read from ``/proc`` where it can be (setting it to read it back, as
    ``os.umask`` needs, would briefly change it for every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files :func:`atomic_write` leaves when killed mid-write, in
    ``out`` and its checkpoint directories (call it while holding the run's lock)."""
    out = Path(out)
    found = [*out.glob(".*.tmp"), *out.glob("checkpoints/*/.*.tmp")]
    for path in found:
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
    return found


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented JSON with a final newline, UTF-8 encoded."""
    return (json.dumps(obj, indent=1) + "\n").encode()


def save_model_file(path: Path, tensors: dict[str, Tensor], metadata: dict[str, Any]) -> None:
    """A safetensors file of ``tensors`` and ``metadata`` (rnnfuse's convention: every value
    stored as JSON, see :mod:`rnnfuse.io`), written atomically."""
    atomic_write(path, safetensors_bytes(tensors, metadata))


def load_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_model_file`: ``(tensors, metadata)``."""
    path = Path(path)
    try:
        metadata = read_safetensors_metadata(path)
        tensors = load_file(path)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: model file not found") from None
    except IsADirectoryError:
        raise CheckpointError(
            f"{path}: is a directory; expected a model file (.safetensors)"
        ) from None
    except (SafetensorError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    return tensors, metadata


def save_checkpoint(
    out: Path,
    name: str,
    model: dict[str, Tensor],
    tensors: dict[str, Tensor],
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write a checkpoint directory ``out/checkpoints/name`` and point ``latest.json`` at it."""
    out = Path(out)
    if os.path.lexists(out / "checkpoints"):
        check_real_dir(out / "checkpoints", "checkpoints")  # never write or prune through a link
    base, suffix = name, 0
    while (out / "checkpoints" / name).exists():  # never rewrite a directory latest.json may name
        suffix += 1
        name = f"{base}-{suffix}"
    directory = out / "checkpoints" / name
    directory.mkdir(parents=True)
    contents = {
        "model.safetensors": safetensors_bytes(model),
        "training.safetensors": safetensors_bytes(tensors),
        "state.json": json_bytes({"format": FORMAT, **state}),
    }
    for file_name, data in contents.items():
        atomic_write(directory / file_name, data)
    _fsync_dir(directory.parent)  # the new directory's entry is durable before latest.json names it
    pointer = {
        "format": FORMAT,
        "checkpoint": f"checkpoints/{name}",
        "epoch": state.get("epoch"),
        "batch": state.get("batch"),
        "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in contents.items()},
    }
    atomic_write(out / "latest.json", json_bytes(pointer))
    _prune(out / "checkpoints", keep_names={name}, keep=keep)
    return directory


def _prune(root: Path, keep_names: set[str], keep: int) -> None:
    dirs = sorted(
        p
        for p in root.iterdir()
        if not p.is_symlink() and p.is_dir() and p.name.startswith("step-")
    )
    for old in dirs[:-keep]:
        if old.name not in keep_names:
            shutil.rmtree(old, ignore_errors=True)


def load_latest(out: Path) -> Checkpoint:
    """The checkpoint ``latest.json`` names, with every file checked against its SHA-256.

    The directory it names must lie inside ``out/checkpoints`` (a pointer to another run or
    an absolute path is refused), and each file must be a regular file of a sane size.
    """
    out = Path(out)
    pointer_path = out / "latest.json"
    if not pointer_path.exists():
        raise CheckpointError(
            f"{out}: no checkpoint to resume from ({pointer_path.name} not found)"
        )
    pointer = _read_pointer(pointer_path)
    directory = _inside(out, pointer["checkpoint"], pointer_path)
    raw: dict[str, bytes] = {}
    for file_name in _FILES:
        path = directory / file_name
        if not path.exists():
            raise CheckpointError(f"{path}: missing; the checkpoint is incomplete")
        raw[file_name] = _read_checked(
            path, MAX_JSON_BYTES if file_name.endswith(".json") else MAX_FILE_BYTES
        )
        digest = hashlib.sha256(raw[file_name]).hexdigest()
        if digest != pointer["sha256"][file_name]:
            raise CheckpointError(
                f"{path}: SHA-256 {digest[:12]}... differs from latest.json's; the file is corrupt"
            )
    try:
        model, tensors = st_load(raw["model.safetensors"]), st_load(raw["training.safetensors"])
        state = loads_json(raw["state.json"], str(directory / "state.json"))
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{directory}: a checkpoint file is not readable ({exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{directory / 'state.json'}: expected a JSON object, got {type(state).__name__}"
        )
    return Checkpoint(directory, model, tensors, state)


def _inside(out: Path, where: str, pointer_path: Path) -> Path:
    """``out/where`` if it is a directory under ``out/checkpoints``, else ``CheckpointError``."""
    root = (out / "checkpoints").resolve()
    target = (out / where).resolve()
    if Path(where).is_absolute() or target.parent != root:
        raise CheckpointError(
            f'{pointer_path}: "checkpoint" must name a directory in {out / "checkpoints"}, '
            f"got {where!r}"
        )
    return out / "checkpoints" / target.name


def _read_checked(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never through a symbolic link
    (``CheckpointError`` otherwise)."""
    try:
        return read_regular_file(path, "a checkpoint file", limit, follow_symlinks=False)
    except (NotRegularFileError, OSError) as exc:
        raise CheckpointError(str(exc)) from None


def _read_pointer(path: Path) -> dict[str, Any]:
    """``latest.json``, checked: a JSON object with the format, a checkpoint directory and a
    SHA-256 for each of its files (a hand-edited or truncated file raises ``CheckpointError``)."""
    try:
        pointer = loads_json(_read_checked(path, MAX_JSON_BYTES), path.name)
    except ValueError as exc:  # not JSON, not UTF-8 text, or nested too deep
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not isinstance(pointer, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(pointer).__name__}")
    if pointer.get("format") != FORMAT:
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, got {pointer.get('format')!r}")
    where = pointer.get("checkpoint")
    if not isinstance(where, str) or not where.strip():
        raise CheckpointError(
            f'{path}: expected "checkpoint" to name a checkpoint directory '
            f'(e.g. "checkpoints/step-00000042"), got {where!r}'
        )
    hashes = pointer.get("sha256")
    if not isinstance(hashes, dict):
        raise CheckpointError(
            f'{path}: expected "sha256" to be an object with a hash per file, got {hashes!r}'
        )
    lacking = [name for name in _FILES if not isinstance(hashes.get(name), str)]
    if lacking:
        raise CheckpointError(f'{path}: "sha256" lacks a hash for {lacking}')
    return pointer


# ------------------------------------------------------------------ optimizer and RNG


def optimizer_parts(state_dict: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Split an optimizer ``state_dict`` into a JSON part and a tensor part."""
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    groups = json.loads(json.dumps(state_dict["param_groups"]))
    return {"param_groups": groups, "state": plain}, tensors


def optimizer_from_parts(plain: dict[str, Any], tensors: dict[str, Tensor]) -> dict[str, Any]:
    """Inverse of :func:`optimizer_parts`."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    for index, values in plain["state"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [_checked_group(g, k) for k, g in enumerate(plain["param_groups"])]
    return {"state": state, "param_groups": groups}


_RATES = {
    "lr": (0.0, 10.0),
    "initial_lr": (0.0, 10.0),
    "weight_decay": (0.0, 1e6),
    "eps": (0.0, 1.0),
    "momentum": (0.0, 1.0),
    "dampening": (0.0, 1.0),
    "alpha": (0.0, 1.0),
}


def _checked_group(group: Any, index: int) -> dict[str, Any]:
    """An optimizer parameter group from ``state.json`` whose hyperparameters are numbers in
    the range the optimizer can use (``ValueError`` naming the value otherwise): Adam's
    ``betas`` in [0, 1), a learning rate, epsilon or decay finite and not negative."""
    if not isinstance(group, dict):
        raise ValueError(
            f"optimizer.param_groups[{index}]: expected an object, got {type(group).__name__}"
        )
    where = f"optimizer.param_groups[{index}]"
    for key, (low, high) in _RATES.items():
        if key in group and not _number_in(group[key], low, high):
            raise ValueError(
                f"{where}.{key}: expected a number in [{low:g}, {high:g}], got {group[key]!r}"
            )
    if "betas" not in group:
        return group
    betas = group["betas"]
    if (
        not isinstance(betas, list)
        or len(betas) != 2
        or not all(_number_in(b, 0.0, 1.0) and b < 1 for b in betas)
    ):
        raise ValueError(f"{where}.betas: expected two numbers in [0, 1), got {betas!r}")
    return {**group, "betas": tuple(betas)}


def _number_in(value: Any, low: float, high: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def capture_rng() -> tuple[dict[str, Any], Tensor]:
    """Python's and NumPy's global RNG states (JSON) and torch's (a uint8 tensor)."""
    version, words, gauss = random.getstate()
    legacy = np.random.get_state()  # the global RandomState: always MT19937, a tuple
    if not isinstance(legacy, tuple):
        raise TypeError(
            "numpy's global RNG state: expected the legacy MT19937 tuple, got "
            f"{type(legacy).__name__}"
        )
    kind, keys, pos, has_gauss, cached = legacy
    plain = {
        "python": [version, list(words), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return plain, torch.get_rng_state()


def restore_rng(plain: dict[str, Any], torch_state: Tensor) -> None:
    """Inverse of :func:`capture_rng`."""
    version, words, gauss = plain["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch_state)
