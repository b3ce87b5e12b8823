"""The training loop: teacher forcing, per-epoch validation, checkpoints, resume, signals.

Reproducibility: the model is initialised from ``torch.manual_seed(seed)``; each epoch's
order of the training windows comes from PyTorch's ``DistributedSampler`` (seeded with
``seed``, ``set_epoch(epoch)``: a permutation drawn by a generator seeded with ``seed +
epoch``, sharded per rank).  That order depends on nothing else, so a run resumed from any
checkpoint, taken after any optimizer step, redraws the epoch's batches, skips the
``progress.batch`` already done, and repeats the uninterrupted run's computation exactly.  The
global RNG states (Python, NumPy, torch's CPU and, on GPUs, CUDA generator: per rank) are saved and
restored as well (dropout draws from torch's).

SIGINT and SIGTERM set a flag; the loop stops after the current optimizer step, writes a
checkpoint and returns ``128 + signal number``.  A second SIGINT (Ctrl-C twice) stops at
once with ``KeyboardInterrupt``; the checkpoint files are atomic, so an interrupted save
leaves the previous checkpoint in force.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..seq2seq import Seq2Seq
from . import checkpoint as ckpt
from .config import DataConfig, RunConfig, capped_threads, planned_epochs
from .data import Series, load_data
from .distributed import (
    DistEnv,
    any_flag,
    barrier,
    epoch_batches,
    epoch_sampler,
    gather_objects,
    wrap,
)
from .metrics import errors, forecast, model_inputs, truth
from .model import build_model
from .panel import load_panel_data
from .panel_windows import PreparedPanel, panel_errors, prepare_panel
from .windows import SPLIT_WORDS, Prepared, prepare

__all__ = ["Trainer", "TrainResult", "Progress", "StopSignal", "TrainingError", "MODEL_FORMAT"]

MODEL_FORMAT = ckpt.MODEL_FORMAT


class TrainingError(RuntimeError):
    """Training cannot go on: the loss or the validation error stopped being a finite number."""


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint's ``state.json``."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # completed batches of the current epoch
    step: int = 0  # optimizer steps in total
    loss_sum: float = 0.0  # this rank's sum of batch losses times batch sizes, this epoch
    loss_count: int = 0
    # best MAE (a panel: scaled MAE) on the early-stopping split (validation unless
    # data.stop_steps)
    best_metric: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None  # optimizer steps done at the best validation
    stopped_early: bool = False  # the patience ran out
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainResult:
    """What a call to :meth:`Trainer.run` ends with."""

    status: str  # "finished" or "interrupted"
    exit_code: int
    progress: Progress
    seconds: float


class StopSignal:
    """Records SIGINT/SIGTERM while installed (a context manager; main thread only)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.signum: int | None = None
        self._interrupts = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if self.enabled:
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self._interrupts:
            # a second Ctrl-C stops at once; the last checkpoint stays valid
            raise KeyboardInterrupt
        self._interrupts += int(signum == signal.SIGINT)
        if self.signum is None:  # torchrun follows a Ctrl-C with SIGTERM: let the save finish
            self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None


class Trainer:
    """Trains one forecaster for a :class:`RunConfig`, writing checkpoints under ``out``.

    ``out=None`` trains without writing anything.  ``log`` receives the per-epoch lines
    (on rank 0 only).  With ``data.id_column`` the model trains on every series of a panel
    (:attr:`prepared` is then a :class:`~rnnfuse.app.panel_windows.PreparedPanel`), early
    stopping on the scaled MAE (:func:`~rnnfuse.app.panel_windows.panel_errors`).
    """

    def __init__(
        self,
        config: RunConfig,
        out: Path | None,
        *,
        env: DistEnv | None = None,
        series: Series | None = None,
        log: Callable[[str], None] = print,
        show_progress: bool | None = None,
        prepared: Prepared | None = None,
        extra_covariates: int = 0,
    ) -> None:
        self.config, self.out, self.env = (
            config,
            None if out is None else Path(out),
            env or DistEnv(),
        )
        self.log = log if self.env.is_main else (lambda _msg: None)
        self.show_progress = False if not self.env.is_main else show_progress
        torch.set_num_threads(capped_threads(config.threads, self.log))
        d = config.data
        self.prepared: Prepared | PreparedPanel = (
            prepared if prepared is not None else _prepare(d, series)
        )  # demo hybrids pass theirs
        self.metric = (
            "scaled_mae" if isinstance(self.prepared, PreparedPanel) else "mae"
        )  # what early stopping compares
        torch.manual_seed(config.seed)
        self.model: Seq2Seq = build_model(config.model, extra_covariates, len(d.covariates)).to(
            self.env.device
        )
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=o.lr, weight_decay=o.weight_decay
        )
        self.progress = Progress()
        self.sampler = epoch_sampler(self.prepared.train, self.env, config.seed)
        self.epochs = planned_epochs(o, len(self.sampler))
        self.scheduler = _scheduler(self.optimizer, config, self.epochs)
        self.ddp: nn.Module = self.model
        self._saved_step: int | None = None
        self._best_weights: dict[str, Tensor] | None = None

    @property
    def data(self) -> Prepared:
        """The prepared series of a one-series run (a panel's windows: :attr:`prepared`)."""
        if isinstance(self.prepared, PreparedPanel):
            raise TypeError(
                "Trainer.data: this run trains on a panel of series; its windows "
                "are Trainer.prepared"
            )
        return self.prepared

    # ------------------------------------------------------------------ set-up
    def start(self, resume: bool = False) -> None:
        """Begin a new run, or load the newest checkpoint under ``out`` (``resume=True``)."""
        if resume:
            self._resume()
        elif self.out is not None and self.env.is_main:
            if (self.out / "latest.json").exists():
                raise ckpt.CheckpointError(
                    f"{self.out}: already holds a run (latest.json); pass --resume to continue it "
                    "or choose another --out"
                )
            self.out.mkdir(parents=True, exist_ok=True)
            ckpt.atomic_write(self.out / "config.json", ckpt.json_bytes(self.config.to_dict()))
        barrier(self.env)
        self.ddp = wrap(self.model, self.env)

    def _resume(self) -> None:
        if self.out is None:
            raise ValueError("resume: needs an output directory")
        point = ckpt.load_latest(self.out)
        saved = RunConfig.from_dict(point.state.get("config"), f"{point.directory}/state.json")
        if _without_epochs(saved) != _without_epochs(self.config):
            raise ckpt.CheckpointError(
                f"{point.directory}: was written with a different configuration; resume with the "
                "saved one (only optim.epochs, optim.steps and threads may change)"
            )
        try:
            self._load_point(point)
        except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
            raise ckpt.CheckpointError(
                f"{point.directory}: the checkpoint's state.json or training.safetensors is "
                f"incomplete or invalid ({type(exc).__name__}: {str(exc)[:200]})"
            ) from None
        self.log(
            f"resumed from {point.directory} at epoch {self.progress.epoch + 1} "
            f"(batch {self.progress.batch}, {self.progress.epoch} epochs done)"
        )

    def _load_point(self, point: ckpt.Checkpoint) -> None:
        """Weights, optimizer, scheduler, progress and RNG states from a loaded checkpoint."""
        self.model.load_state_dict(point.model)
        self.optimizer.load_state_dict(
            ckpt.optimizer_from_parts(point.state["optimizer"], point.tensors)
        )
        if self.scheduler is not None:
            self.scheduler.load_state_dict(point.state["scheduler"])
            _replan_cosine(self.scheduler, self.epochs)
        self.progress = _checked_progress(
            point.state["progress"], len(self.sampler), self.config.optim.batch_size
        )
        self._saved_step = self.progress.step
        self._restore_rng(point)
        self._best_weights = self._saved_best()

    def _saved_best(self) -> dict[str, Tensor] | None:
        """The best validation weights of a resumed run (``best.safetensors``), if written."""
        path = None if self.out is None else self.out / "best.safetensors"
        if path is None or not path.exists() or self.progress.best_metric is None:
            return None
        weights, _ = ckpt.load_model_file(path)
        return weights

    def _restore_rng(self, point: ckpt.Checkpoint) -> None:
        saved_world = point.state.get("world_size", 1)
        rank = self.env.rank
        if saved_world != self.env.world_size:
            self.log(
                f"warning: the checkpoint was written by {saved_world} process(es), this run has "
                f"{self.env.world_size}; the data shards differ, so the run will not repeat "
                "the original exactly"
            )
            rank = 0
        ckpt.restore_rng(point.state["rng"], point.tensors[f"rng.torch.{rank}"])
        cuda_state = point.tensors.get(f"rng.cuda.{rank}")
        if cuda_state is not None and self.env.device.type == "cuda":
            torch.cuda.set_rng_state(cuda_state, self.env.device)

    # ------------------------------------------------------------------ loop
    def run(self, stop: StopSignal | None = None) -> TrainResult:
        """Train until the planned epochs are done (``optim.epochs``, or those ``optim.steps``
        needs), the patience runs out or a stop signal arrives.  A run that ends (not one
        interrupted) leaves the model with its best validation weights."""
        stop = stop or StopSignal(enabled=False)
        began = time.perf_counter()
        while self.progress.epoch < self.epochs and not self.progress.stopped_early:
            if self._epoch(stop):
                return self._interrupted(stop, began)
            if any_flag(stop.requested, self.env):
                return self._interrupted(stop, began)
        if self._best_weights is not None:
            self.model.load_state_dict(self._best_weights)
        return TrainResult("finished", 0, self.progress, time.perf_counter() - began)

    def _epoch(self, stop: StopSignal) -> bool:
        """Run the rest of the current epoch; True if stopped by a signal."""
        p, o = self.progress, self.config.optim
        started = time.perf_counter()
        batches = epoch_batches(self.sampler, p.epoch, o.batch_size)
        with self._bar(len(batches)) as bar:
            for index in range(p.batch, len(batches)):
                loss, size = self._step(torch.tensor(batches[index]))
                p.loss_sum, p.loss_count = p.loss_sum + loss * size, p.loss_count + size
                p.batch, p.step = index + 1, p.step + 1
                bar.set_postfix_str(f"loss {p.loss_sum / p.loss_count:.4f}", refresh=False)
                bar.update()
                if any_flag(stop.requested, self.env):
                    return True
        self._end_epoch(time.perf_counter() - started)
        return False

    def _bar(self, batches: int) -> tqdm:
        """This epoch's progress bar on stderr, ``epoch E/N |####| done/total loss L``: off
        unless stderr is a terminal (``show_progress=None``), and off on ranks other than 0;
        erased at the end (the per-epoch line follows)."""
        return tqdm(
            total=batches,
            initial=self.progress.batch,
            desc=f"epoch {self.progress.epoch + 1}/{self.epochs}",
            disable=None if self.show_progress is None else not self.show_progress,
            leave=False,
            dynamic_ncols=True,
            mininterval=0.1,
        )

    def _step(self, index: Tensor) -> tuple[float, int]:
        batch = self.prepared.train.subset(index).to(self.env.device)
        kwargs = model_inputs(self.model, batch)
        prediction = self.ddp(kwargs.pop("inputs"), batch.targets, **kwargs)
        loss = nn.functional.mse_loss(prediction, batch.targets)
        if any_flag(not math.isfinite(float(loss.detach())), self.env):
            p = self.progress
            raise TrainingError(
                f"the training loss became {float(loss.detach())} at epoch {p.epoch + 1}, batch "
                f"{p.batch + 1}; training stopped (the last checkpoint and best.safetensors are "
                f"from before); try a lower --lr (now {self.config.optim.lr:g}) or --grad-clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.optim.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        return float(loss.item()), len(index)

    def _end_epoch(self, seconds: float) -> None:
        p = self.progress
        total, count = _sum_over_ranks(p.loss_sum, p.loss_count, self.env)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        record = {
            "epoch": p.epoch + 1,
            "train_loss": total / max(count, 1),
            "lr": lr,
            "seconds": seconds,
        }
        split = self.prepared.stop_split
        if self.env.is_main:
            for name in dict.fromkeys(("val", split)):
                record.update(
                    {f"{name}_{k}": v for k, v in self.evaluate(name).items() if k != "mae_by_step"}
                )
        p.history.append(record)
        p.epoch, p.batch, p.loss_sum, p.loss_count = p.epoch + 1, 0, 0.0, 0
        metric = record.get(f"{split}_{self.metric}", math.nan)
        if self.env.is_main and not math.isfinite(metric):
            raise TrainingError(
                f"the {SPLIT_WORDS[split]} {_METRIC_WORDS[self.metric]} became {metric} after "
                f"epoch {p.epoch}; training stopped (the last checkpoint and best.safetensors are "
                "from before); try a lower --lr"
            )
        improved = self.env.is_main and (p.best_metric is None or metric < p.best_metric)
        if improved:
            p.best_metric, p.best_epoch, p.best_step = metric, p.epoch, p.step
            self._best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        patience = self.config.optim.patience
        waited = p.step - (p.best_step if p.best_step is not None else 0)
        p.stopped_early = any_flag(
            self.env.is_main and patience is not None and waited >= patience, self.env
        )
        self.save(best=improved)
        self.log(
            _epoch_line(record, self.epochs, improved)
            + (
                f"\nno better {SPLIT_WORDS[split]} {_METRIC_WORDS[self.metric]} in {waited} steps "
                f"(patience {patience}): stopped; the best weights (epoch {p.best_epoch}) are kept"
                if p.stopped_early
                else ""
            )
        )

    def _interrupted(self, stop: StopSignal, began: float) -> TrainResult:
        p = self.progress
        if self._saved_step != p.step:  # else the end-of-epoch checkpoint holds this state
            self.save(best=False)
        name = signal.Signals(stop.signum).name if stop.signum else "a signal on another rank"
        where = self.out if self.out is not None else "(no --out: nothing saved)"
        point = (
            f"after epoch {p.epoch}"
            if p.batch == 0
            else f"at epoch {p.epoch + 1}, after batch {p.batch}"
        )
        self.log(
            f"interrupted by {name} {point}: checkpoint saved in {where}; "
            f"continue with: rnnfuse train --out {where} --resume"
        )
        code = 128 + int(stop.signum or signal.SIGTERM)
        return TrainResult("interrupted", code, self.progress, time.perf_counter() - began)

    # ------------------------------------------------------------------ evaluation and saving
    def evaluate(self, split: str) -> dict[str, Any]:
        """MAE/RMSE (series units) of the autoregressive forecasts on ``val``, ``test`` or
        ``stop`` (the early-stopping windows, when the data have them); on a panel also the
        scaled MAE (:func:`~rnnfuse.app.panel_windows.panel_errors`)."""
        prediction = self.forecasts(split)
        if isinstance(self.prepared, PreparedPanel):
            return panel_errors(
                prediction, self.prepared.truth(split), getattr(self.prepared, split).scales()
            )
        return errors(prediction, truth(self.prepared.series, getattr(self.prepared, split)))

    def forecasts(self, split: str) -> np.ndarray:
        """The model's autoregressive forecasts ``(N, H)``
        (series units) of the ``split`` windows."""
        windows = getattr(self.prepared, split)
        if windows is None:
            raise ValueError(
                f"evaluate: split: {split!r} has no windows (data.stop_steps is 0); "
                "expected 'val' or 'test'"
            )
        return forecast(self.model, windows.to(self.env.device))

    def model_metadata(self) -> dict[str, Any]:
        """What ``rnnfuse predict`` needs besides the weights."""
        data = self.prepared
        scale = (
            {"panel": data.metadata()} if isinstance(data, PreparedPanel) else {"scale": data.scale}
        )  # a panel's: per series
        norm = None if isinstance(data, PreparedPanel) else data.covariate_norm
        return {
            "format": MODEL_FORMAT,
            "config": self.config.to_dict(),
            **scale,
            "epoch": self.progress.epoch,
            "best_val_mae": self.progress.best_metric,
        } | ({} if norm is None else {"covariates": norm.to_dict()})

    def save(self, best: bool) -> None:
        """Write a checkpoint (rank 0; every rank contributes its RNG state)."""
        plain_rng, torch_rng = ckpt.capture_rng()
        cuda_rng = (
            torch.cuda.get_rng_state(self.env.device) if self.env.device.type == "cuda" else None
        )
        rng_states = gather_objects((torch_rng, cuda_rng), self.env)
        if self.out is not None and self.env.is_main:
            self._write(best, plain_rng, rng_states)
        self._saved_step = self.progress.step
        barrier(self.env)

    def _write(
        self, best: bool, plain_rng: dict[str, Any], rng_states: list[tuple[Tensor, Tensor | None]]
    ) -> None:
        assert self.out is not None  # save() writes only with an output directory
        weights = self.model.state_dict()
        if best:
            ckpt.save_model_file(self.out / "best.safetensors", weights, self.model_metadata())
        opt_plain, tensors = ckpt.optimizer_parts(self.optimizer.state_dict())
        for rank, (cpu_state, cuda_state) in enumerate(rng_states):
            tensors[f"rng.torch.{rank}"] = cpu_state
            if cuda_state is not None:
                tensors[f"rng.cuda.{rank}"] = cuda_state.cpu()
        state = {
            "config": self.config.to_dict(),
            "progress": asdict(self.progress),
            "optimizer": opt_plain,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": plain_rng,
            "world_size": self.env.world_size,
            "scale": None
            if isinstance(self.prepared, PreparedPanel)
            else self.prepared.scale,  # a panel's: best.safetensors
            "epoch": self.progress.epoch,
            "batch": self.progress.batch,
            "data_order": "torch DistributedSampler(seed=seed, drop_last=False), set_epoch(epoch)",
        }
        ckpt.save_checkpoint(self.out, f"step-{self.progress.step:08d}", weights, tensors, state)


def _prepare(data: DataConfig, series: Series | None) -> Prepared | PreparedPanel:
    """The windows of ``series`` (default: the data ``data`` names), or of every series of the
    panel ``data`` names (``data.id_column``, no ``series``)."""
    if data.id_column is not None and series is None:
        return prepare_panel(load_panel_data(data), data)
    return prepare(series if series is not None else load_data(data), data)


_METRIC_WORDS = {"mae": "MAE", "scaled_mae": "scaled MAE"}


def _scheduler(optimizer: torch.optim.Optimizer, config: RunConfig, epochs: int) -> Any:
    o = config.optim
    if o.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=epochs, eta_min=o.lr * 0.01
        )
    if o.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_size, gamma=o.gamma)
    return None


def _replan_cosine(scheduler: Any, epochs: int) -> None:
    """Stretch a resumed cosine schedule over a changed number of epochs.

    The saved state holds the old ``T_max``; the learning rate is set to where the new
    cosine stands after the epochs already done, and the recursive updates go on from there.
    """
    if (
        not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
        or scheduler.T_max == epochs
    ):
        return
    scheduler.T_max = epochs
    done = min(scheduler.last_epoch, epochs)
    factor = (1 + math.cos(math.pi * done / epochs)) / 2
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = scheduler.eta_min + (base - scheduler.eta_min) * factor
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def _sum_over_ranks(total: float, count: int, env: DistEnv) -> tuple[float, int]:
    parts = gather_objects((total, count), env)
    return sum(t for t, _ in parts), sum(c for _, c in parts)


def _checked_progress(raw: Any, samples: int, batch_size: int) -> Progress:
    """A :class:`Progress` from ``state.json``, each field checked: counts are ints in range
    (``batch`` within one epoch of ``samples`` windows), the best metric finite or null."""
    if not isinstance(raw, dict):
        raise TypeError(f"progress: expected an object, got {type(raw).__name__}")
    progress = Progress(**raw)
    batches = -(-samples // batch_size)
    limits = {"epoch": 10**6, "batch": batches, "step": 10**12, "loss_count": samples}
    for name, high in limits.items():
        value = getattr(progress, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
            raise ValueError(f"progress.{name}: expected an int in [0, {high}], got {value!r}")
    if progress.best_step is not None and (
        isinstance(progress.best_step, bool)
        or not isinstance(progress.best_step, int)
        or not 0 <= progress.best_step <= progress.step
    ):
        raise ValueError(
            f"progress.best_step: expected null or an int in [0, {progress.step}], got "
            f"{progress.best_step!r}"
        )
    if not isinstance(progress.stopped_early, bool):
        raise ValueError(
            f"progress.stopped_early: expected true or false, got {progress.stopped_early!r}"
        )
    for name in ("loss_sum", "best_metric"):
        value = getattr(progress, name)
        if not (value is None and name == "best_metric") and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"progress.{name}: expected a finite number, got {value!r}")
    if not isinstance(progress.history, list):
        raise ValueError(
            f"progress.history: expected a list, got {type(progress.history).__name__}"
        )
    return progress


def _without_epochs(config: RunConfig) -> dict[str, Any]:
    raw = config.to_dict()
    raw["optim"].pop("epochs")
    raw["optim"].pop("steps")
    raw.pop("threads")  # `--resume --threads N` is allowed (README, _RESUME_MAY_CHANGE)
    return raw


def _epoch_line(record: dict[str, Any], epochs: int, best: bool) -> str:
    val = (
        f"  val MAE {record['val_mae']:.3f} RMSE {record['val_rmse']:.3f}"
        if "val_mae" in record
        else ""
    )
    if "val_scaled_mae" in record:  # a panel: MAE over each series' scale
        val += f" scaled MAE {record['val_scaled_mae']:.3f}"
    if "stop_mae" in record:
        scaled = f" scaled {record['stop_scaled_mae']:.3f}" if "stop_scaled_mae" in record else ""
        val = f"  stop MAE {record['stop_mae']:.3f}{scaled}" + val
    return (
        f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}{val}  "
        f"lr {record['lr']:.2e}  {record['seconds']:.1f} s{'  (best)' if best else ''}"
    )
