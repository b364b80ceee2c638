"""One training loop for every toy task: AdamW/SGD, schedules, evaluation, checkpoints, resume.

Follows the loop of Garg et al.'s `train.py` (fresh prompts every step, optional
curriculum inside the task) with what long CPU runs need: atomic safetensors
checkpoints every `checkpoint_every` steps and on Ctrl-C, and `resume=True`, which
restores weights, optimiser state, the loss history and every RNG (torch, numpy,
python, the task sampler) so the continued run's loss curve is the one an
uninterrupted run with the same seed would have produced.

Plug-in points (used by later experiments, e.g. forgetting schedules):

- `task`: anything with `sample(batch_size, generator, step=)` and `loss(model, batch)`
  (`toy_models.tasks.base.Task`);
- `schedule(step, model, optimizer)`: called at the start of every step before the
  batch is drawn; it may re-initialise parameters or optimiser state and returns a
  list of what it changed (logged as events). It must be a function of `step` (and
  its own seeded generator) so resumed runs repeat it exactly; see
  `toy_models.schedules`;
- `callbacks`: called after every step with a `StepInfo`;
- `eval_fn(model, step) -> dict[str, float]`: every `eval_every` steps and at the end,
  on its own seeded data (it must not draw from the training generator).

`ema_decay > 0` also keeps an exponential moving average of the parameters (torch's
`AveragedModel` with its EMA update, after every optimiser step, checkpointed and
resumed with the run) and evaluates it beside the live model: each eval entry gains
`ema_<key>` for every key of `eval_fn`. A constant learning rate keeps the live weights
jittering around the trajectory's centre; the average shows that centre, so a curve
that falls only in the live model is noise, one that falls in both is the trajectory.
(Under a forgetting schedule the average blends re-initialised rows with their earlier
values for about 1 / (1 - decay) steps after each reset.)
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from probes.errors import IclensError
from toy_models.checkpoint import (TrainState, config_diff, load_checkpoint, read_config, read_pointer,
                                   save_checkpoint, write_config)

Schedule = Callable[[int, nn.Module, torch.optim.Optimizer], "list[str] | None"]


@dataclass(kw_only=True)
class TrainConfig:
    """Optimisation settings. `eval_every`/`checkpoint_every` = 0 means only at the end."""

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.0
    grad_clip: float = 0.0
    ema_decay: float = 0.0
    eval_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise IclensError(f"--steps must be >= 1 (got {self.steps}).")
        if self.batch_size < 1:
            raise IclensError(f"batch size must be >= 1 (got {self.batch_size}).")
        if not self.lr > 0:
            raise IclensError(f"learning rate must be > 0 (got {self.lr}).")
        if self.optimizer not in ("adamw", "sgd"):
            raise IclensError(f"optimizer must be 'adamw' or 'sgd' (got {self.optimizer!r}).")
        if not 0 <= self.momentum < 1:
            raise IclensError(f"momentum must lie in [0, 1) (got {self.momentum}).")
        if self.lr_schedule not in ("constant", "cosine"):
            raise IclensError(f"lr schedule must be 'constant' or 'cosine' (got {self.lr_schedule!r}).")
        if not 0 <= self.ema_decay < 1:
            raise IclensError(f"ema decay must lie in [0, 1) (got {self.ema_decay}); 0 keeps no average.")
        if min(self.warmup_steps, self.eval_every, self.checkpoint_every) < 0 or self.grad_clip < 0:
            raise IclensError("warmup_steps, eval_every, checkpoint_every and grad_clip must be >= 0.")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lr_at(self, step: int) -> float:
        """Learning rate at `step`: linear warm-up, then constant or cosine decay to min_lr_ratio * lr."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        t = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class StepInfo:
    """What callbacks see after each optimiser step (`step` counts completed steps)."""

    step: int
    loss: float
    model: nn.Module
    optimizer: torch.optim.Optimizer


@dataclass
class TrainResult:
    """Loss per step, evaluations, schedule events, timing; `interrupted` when Ctrl-C stopped the run."""

    losses: list[float]
    evals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    steps_done: int = 0
    elapsed_s: float = 0.0
    steps_per_s: float = 0.0
    resumed_from: int = 0
    interrupted: bool = False


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def check_run_dir(run_dir: Path, run_config: dict[str, Any], *, resume: bool) -> None:
    """Refuse, before anything is written, to overwrite a run or resume one made with another config."""
    run_dir = Path(run_dir)
    has_ckpt = (run_dir / "checkpoint.json").exists()
    if resume:
        if not run_dir.is_dir():
            raise IclensError(f"cannot resume: {run_dir} does not exist; drop --resume to start a new run.")
        saved = read_config(run_dir)
        diff = config_diff(saved, run_config)
        if diff:
            raise IclensError(f"cannot resume {run_dir}: its config differs ({'; '.join(diff[:3])}); "
                              "pass the original options or choose a new --out.")
        read_pointer(run_dir)
    elif has_ckpt:
        raise IclensError(f"{run_dir} already holds a training run: pass --resume to continue it or choose a new --out.")


class _SigintFlag:
    """Turn Ctrl-C into a flag checked between steps, so the checkpoint written on interrupt is a whole step."""

    def __init__(self) -> None:
        self.hit = False
        self._old: Any = None

    def __enter__(self) -> _SigintFlag:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.hit:  # second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(model: nn.Module, task: Any, cfg: TrainConfig, *, run_dir: str | Path | None = None,
          run_config: dict[str, Any] | None = None, resume: bool = False, schedule: Schedule | None = None,
          callbacks: Sequence[Callable[[StepInfo], None]] = (), eval_fn: Callable[[nn.Module, int], dict] | None = None,
          progress: bool = True, device: str | torch.device | None = None) -> TrainResult:
    """Train `model` on fresh batches from `task` for `cfg.steps` steps (continuing a checkpoint if `resume`).

    Args:
        run_dir: folder for `config.json` and checkpoints (None: no checkpoints, nothing written).
        run_config: the full JSON config of the run, saved as config.json and compared on resume
            (default: {"task": task.config_dict(), "train": cfg}).
        resume: continue from the checkpoint in run_dir; IclensError if it is missing, corrupt, or the
            config differs. Without it, an existing checkpoint in run_dir is an error.
    Returns a TrainResult; on Ctrl-C a checkpoint is written and KeyboardInterrupt re-raised.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    run_config = run_config if run_config is not None else {"task": task.config_dict(), "train": cfg.to_dict()}
    if run_dir is not None:
        run_dir = Path(run_dir)
        check_run_dir(run_dir, run_config, resume=resume)
    elif resume:
        raise IclensError("resume needs a run folder.")
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    optimizer = make_optimizer(model, cfg)
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay)) if cfg.ema_decay > 0 else None
    state = TrainState()
    if resume:
        state = load_checkpoint(run_dir, model, optimizer, generator, average=average)
    elif run_dir is not None:
        write_config(run_dir, run_config)
    start = state.step

    def checkpoint() -> None:
        if run_dir is not None:
            save_checkpoint(run_dir, model, optimizer, generator, state, average=average)

    t0 = time.perf_counter() - state.elapsed_s
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc="train", dynamic_ncols=True)
    model.train()
    interrupted = False
    try:
        with _SigintFlag() as sigint:
            for step in range(start, cfg.steps):
                if sigint.hit:
                    interrupted = True
                    break
                if schedule is not None:
                    changed = schedule(step, model, optimizer)
                    if changed:
                        state.events.append({"step": step, "reset": list(changed)})
                lr = cfg.lr_at(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                batch = {k: v.to(device) for k, v in task.sample(cfg.batch_size, generator, step=step).items()}
                loss = task.loss(model, batch)
                if not torch.isfinite(loss):
                    raise IclensError(f"training diverged at step {step} (loss {loss.item()}): lower the learning rate.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                if average is not None:
                    average.update_parameters(model)
                state.losses.append(loss.item())
                state.step = step + 1
                for cb in callbacks:
                    cb(StepInfo(state.step, state.losses[-1], model, optimizer))
                done = state.step == cfg.steps
                if eval_fn is not None and ((cfg.eval_every and state.step % cfg.eval_every == 0) or done):
                    model.eval()
                    state.evals.append({"step": state.step, **eval_fn(model, state.step)})
                    if average is not None:
                        ema = eval_fn(average.module.eval(), state.step)
                        state.evals[-1].update({f"ema_{k}": v for k, v in ema.items()})
                    model.train()
                state.elapsed_s = time.perf_counter() - t0
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and not done:
                    checkpoint()
                bar.update(1)
                if state.step % 25 == 0 or done:
                    bar.set_postfix(loss=f"{sum(state.losses[-25:]) / len(state.losses[-25:]):.4f}")
            state.elapsed_s = time.perf_counter() - t0
            checkpoint()
    finally:
        bar.close()
        model.eval()
    if interrupted:
        raise KeyboardInterrupt(f"interrupted at step {state.step}; checkpoint written")
    wall = state.elapsed_s
    return TrainResult(losses=state.losses, evals=state.evals, events=state.events, steps_done=state.step,
                       elapsed_s=wall, steps_per_s=state.step / wall if wall > 0 else 0.0, resumed_from=start)
