"""Atomic, pickle-free training checkpoints: safetensors for tensors, JSON for the rest.

A run folder holds `config.json` (everything that made the run), a pointer file
`checkpoint.json` ({"step", "path"}) and `checkpoints/step-NNNNNNN/` folders, each with

- `model.safetensors`      the model's state_dict;
- `optimizer.safetensors`  the optimiser's per-parameter state, flattened `state.{i}.{key}`;
- `state.safetensors`      RNG states (torch CPU/CUDA, numpy key array, the task generator)
                           and the per-step loss history;
- `state.json`             step, optimiser param_groups, python/numpy RNG scalars, evals, extra;
- `average.safetensors`    the parameter average's state_dict, in runs that keep one (`ema_decay`).

A checkpoint folder is written under a temporary name and renamed into place, then
the pointer is replaced atomically (temp file + os.replace), so a run killed at any
moment leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from probes.errors import IclensError
from probes.results import atomic_write_text, to_jsonable, write_json

POINTER = "checkpoint.json"
CONFIG = "config.json"


@dataclass
class TrainState:
    """Everything a resumed run needs besides the model and optimiser objects."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng(task_generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states of torch (CPU, CUDA), numpy, python and the task sampler as (tensors, JSON scalars)."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.task": task_generator.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    scalars = {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
               "python": [py_version, list(py_state), py_gauss]}
    return tensors, scalars


def restore_rng(tensors: dict[str, torch.Tensor], scalars: dict[str, Any], task_generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    task_generator.set_state(tensors["rng.task"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
        if states:
            torch.cuda.set_rng_state_all(states)
    kind, pos, has_gauss, cached = scalars["numpy"]
    np.random.set_state((kind, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    py_version, py_state, py_gauss = scalars["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = val.detach().cpu().contiguous()
            elif val is not None:
                tensors[f"state.{idx}.{key}"] = torch.tensor(val)
    return tensors, to_jsonable(sd["param_groups"])


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, val in tensors.items():
        _, idx, key = name.split(".", 2)
        state.setdefault(int(idx), {})[key] = val
    return {"state": state, "param_groups": groups}


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    task_generator: torch.Generator, state: TrainState, *,
                    average: torch.nn.Module | None = None) -> Path:
    """Write checkpoint `step-{state.step}` atomically and point `checkpoint.json` at it; keep the previous one."""
    run_dir = Path(run_dir)
    ck_root = run_dir / "checkpoints"
    ck_root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state.step:07d}"
    for stale in ck_root.glob(".tmp-step-*"):  # left by a run killed mid-write
        shutil.rmtree(stale, ignore_errors=True)
    tmp = ck_root / f".tmp-{name}"
    tmp.mkdir()
    save_file(_cpu_state(model), str(tmp / "model.safetensors"))
    if average is not None:
        save_file(_cpu_state(average), str(tmp / "average.safetensors"))
    opt_tensors, groups = _flatten_optimizer(optimizer)
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    rng_tensors, rng_scalars = capture_rng(task_generator)
    rng_tensors["history.losses"] = torch.tensor(state.losses, dtype=torch.float64)
    save_file(rng_tensors, str(tmp / "state.safetensors"))
    write_json(tmp / "state.json", {"step": state.step, "param_groups": groups, "rng": rng_scalars,
                                    "evals": state.evals, "events": state.events, "elapsed_s": state.elapsed_s,
                                    "extra": state.extra})
    final = ck_root / name
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    previous = read_pointer(run_dir, missing_ok=True)
    write_json(run_dir / POINTER, {"step": state.step, "path": f"checkpoints/{name}"})
    # keep the new one and the one before it; older folders are removed
    keep = {name, Path(previous["path"]).name if previous else None}
    for old in ck_root.glob("step-*"):
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return final


def read_pointer(run_dir: Path, *, missing_ok: bool = False) -> dict[str, Any] | None:
    path = Path(run_dir) / POINTER
    if not path.exists():
        if missing_ok:
            return None
        raise IclensError(f"no checkpoint in {run_dir} ({POINTER} missing): train first, or point at a run folder.")
    try:
        ptr = json.loads(path.read_text())
        return {"step": int(ptr["step"]), "path": str(ptr["path"])}
    except (ValueError, KeyError, TypeError):
        raise IclensError(f"checkpoint pointer {path} is corrupt: delete the run folder or start a new --out.") from None


def load_checkpoint(run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    task_generator: torch.Generator | None, *, restore_rngs: bool = True,
                    average: torch.nn.Module | None = None) -> TrainState:
    """Load the checkpoint `checkpoint.json` points at into `model` (and optimiser, parameter average, RNGs);
    IclensError if broken."""
    ptr = read_pointer(run_dir)
    folder = Path(run_dir) / ptr["path"]
    hint = "delete the run folder or start a new --out"
    needed = (["model.safetensors", "state.json", "state.safetensors"] + (["optimizer.safetensors"] if optimizer else [])
              + (["average.safetensors"] if average is not None else []))
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        raise IclensError(f"checkpoint {folder} is incomplete ({', '.join(missing)} missing): {hint}.")
    try:
        model_sd = load_file(str(folder / "model.safetensors"))
        meta = json.loads((folder / "state.json").read_text())
        st = load_file(str(folder / "state.safetensors"))
        opt_t = load_file(str(folder / "optimizer.safetensors")) if optimizer is not None else None
        avg_sd = load_file(str(folder / "average.safetensors")) if average is not None else None
    except (SafetensorError, ValueError, OSError) as e:
        raise IclensError(f"checkpoint {folder} is corrupt ({type(e).__name__}): {hint}.") from None
    try:
        device = next(model.parameters()).device
        model.load_state_dict({k: v.to(device) for k, v in model_sd.items()})
        if optimizer is not None:
            optimizer.load_state_dict(_unflatten_optimizer(opt_t, meta["param_groups"]))
        if average is not None:
            average.load_state_dict({k: v.to(device) for k, v in avg_sd.items()})
    except (RuntimeError, KeyError, ValueError) as e:
        raise IclensError(f"checkpoint {folder} does not fit this model ({str(e).splitlines()[0][:120]}): {hint}.") from None
    if restore_rngs and task_generator is not None:
        restore_rng(st, meta["rng"], task_generator)
    return TrainState(step=int(meta["step"]), losses=st["history.losses"].tolist(), evals=meta.get("evals", []),
                      events=meta.get("events", []), elapsed_s=float(meta.get("elapsed_s", 0.0)),
                      extra=meta.get("extra", {}))


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json(Path(run_dir) / CONFIG, config)


def read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise IclensError(f"{path} missing: {run_dir} is not a training run folder.")
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise IclensError(f"{path} is corrupt JSON: delete the run folder or start a new --out.") from None


def config_diff(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two (nested) config dicts."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{key}.")
        elif to_jsonable(a) != to_jsonable(b):
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


__all__ = ["TrainState", "save_checkpoint", "load_checkpoint", "read_pointer", "write_config", "read_config",
           "config_diff", "capture_rng", "restore_rng", "atomic_write_text"]
