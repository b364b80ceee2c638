"""Toy-models page's computation: find training runs, read their curves, probe checkpoints, start a run.

A run folder is what `iclens train ...` writes (`toy_models.train` + `toy_models.checkpoint`):
config.json, checkpoint.json pointing at checkpoints/step-NNNNNNN/ (the newest two are
kept), and, once finished, result.json + report.html. Model-level views (attention
across checkpoints, error vs k of an unfinished run, starting a run) cover the
linear-regression experiment (`toy_models.linreg_experiment`), the toy experiment that
exists today; other experiments' runs show their config and saved curves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from probes.errors import IclensError

MAX_DEPTH = 4


def find_runs(root: Path) -> list[str]:
    """Run folders under `root` (relative paths, sorted): folders with config.json and checkpoint.json, inside root."""
    root = Path(root).resolve()
    runs = []
    for ptr in root.rglob("checkpoint.json"):
        folder = ptr.parent
        rel = folder.relative_to(root)
        if len(rel.parts) <= MAX_DEPTH and (folder / "config.json").is_file() and folder.resolve().is_relative_to(root):
            runs.append(str(rel) if rel.parts else ".")
    return sorted(runs)


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoint folders of a run (step-NNNNNNN with model.safetensors), ascending."""
    steps = []
    for f in (Path(run_dir) / "checkpoints").glob("step-*"):
        if (f / "model.safetensors").is_file() and f.name[5:].isdigit():
            steps.append(int(f.name[5:]))
    return sorted(steps)


def _linreg_cfg(saved: dict[str, Any]):
    from toy_models.linreg_experiment import LinRegRunConfig

    return LinRegRunConfig(**saved["run"])


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Config, checkpoint steps and curves of a run (from result.json, else from its latest checkpoint)."""
    from toy_models.checkpoint import load_checkpoint, read_config

    run_dir = Path(run_dir)
    saved = read_config(run_dir)
    out: dict[str, Any] = {"config": saved, "experiment": saved.get("experiment", "?"), "steps": checkpoint_steps(run_dir),
                           "finished": (run_dir / "result.json").is_file(), "losses": [], "evals": []}
    if out["finished"]:
        try:
            result = json.loads((run_dir / "result.json").read_text())
        except ValueError:
            raise IclensError(f"{run_dir}/result.json is not valid JSON: re-run the training or delete the file.") from None
        out.update({k: result[k] for k in ("losses", "evals", "error_vs_k") if k in result})
    elif out["experiment"] == "linreg":
        from toy_models.linreg_experiment import build_model

        state = load_checkpoint(run_dir, build_model(_linreg_cfg(saved)), None, None, restore_rngs=False)
        out["losses"], out["evals"] = state.losses, state.evals
    return out


def _linreg_model_at(run_dir: Path, step: int):
    from safetensors.torch import load_file

    from toy_models.checkpoint import read_config
    from toy_models.linreg_experiment import build_model

    saved = read_config(run_dir)
    if saved.get("experiment") != "linreg":
        raise IclensError(f"{run_dir} is a {saved.get('experiment')!r} run: checkpoint probes cover linreg runs.")
    cfg = _linreg_cfg(saved)
    path = Path(run_dir) / "checkpoints" / f"step-{step:07d}" / "model.safetensors"
    if not path.is_file():
        raise IclensError(f"no checkpoint at step {step} in {run_dir}: pick one of {checkpoint_steps(run_dir)}.")
    model = build_model(cfg)
    model.load_state_dict(load_file(str(path)))
    return model.eval(), cfg


def checkpoint_attention(run_dir: Path, step: int, n_prompts: int = 64) -> dict[str, Any]:
    """Attention of a GPT-style linreg run at checkpoint `step`: from the query, per head, and one prompt's pattern."""
    from toy_models.mechanism import probe_mechanism

    model, cfg = _linreg_model_at(run_dir, step)
    if cfg.model != "gpt":
        return {"lsa_matrix": model.effective_matrix().tolist()}
    m = probe_mechanism(model, cfg.task_config(), n_prompts=n_prompts)
    return {"query_attention": m.query_attention, "attn_to_x": m.attn_to_x, "attn_to_y": m.attn_to_y,
            "sample_pattern": m.sample_pattern, "k": m.k}


def error_curve(run_dir: Path, n_prompts: int = 500) -> dict[str, list[float]]:
    """Error vs k of the run's latest checkpoint and every baseline (for runs without result.json)."""
    from toy_models.linreg_experiment import error_vs_k, load_run

    model, cfg, _ = load_run(run_dir)
    return error_vs_k(model, cfg, n_prompts=n_prompts)


def start_linreg(run_dir: Path, *, model: str = "gpt", d: int = 3, steps: int = 200, n_layers: int = 2,
                 n_heads: int = 2, d_model: int = 32, seed: int = 0, eval_prompts: int = 200,
                 progress: Callable[[float, str], None] | None = None) -> Path:
    """Train a short linreg run into `run_dir` and write result.json + report.html there (as `iclens train linreg`)."""
    from apps.commands.toy_linreg import build_linreg_report, summarize_run
    from probes.results import write_json
    from toy_models.linreg_experiment import LinRegRunConfig, run_config_dict, run_training
    from toy_models.train import check_run_dir

    cfg = LinRegRunConfig(model=model, d=d, steps=steps, n_layers=n_layers, n_heads=n_heads, d_model=d_model, seed=seed,
                          checkpoint_every=max(1, steps // 4), eval_every=max(1, steps // 10))
    check_run_dir(run_dir, run_config_dict(cfg), resume=False)
    every = max(1, steps // 50)

    def tick(info) -> None:
        if progress and (info.step % every == 0 or info.step == steps):
            progress(info.step / steps * 0.9, f"step {info.step}/{steps}, loss {info.loss:.4f}")

    trained, res = run_training(cfg, run_dir, device="cpu", progress=False, callbacks=[tick])
    if progress:
        progress(0.95, "error vs k, shifts and probes")
    result = summarize_run(trained, cfg, res, eval_prompts=eval_prompts, device="cpu")
    write_json(Path(run_dir) / "result.json", result)
    build_linreg_report(Path(run_dir), result)
    return Path(run_dir)
