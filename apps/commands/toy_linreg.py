"""`iclens train linreg`, `iclens eval linreg`, `iclens report linreg-shifts`: in-context linear regression.

train: trains the GPT-style model (Garg et al. 2022) or the ZFB linear self-attention into --out
(checkpoints, result.json, report.html); --resume continues a killed run bit for bit.
eval: the error-vs-k curve of a trained run (optionally under a distribution shift) as JSON.
report linreg-shifts: several runs (e.g. an LSA and a GPT run) side by side under the shifts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import typer

from apps.cli_base import DEVICE_OPT, SEED_OPT, eval_app, prepare_out, report_app, train_app
from apps.figures import toy as toyfig
from apps.report import Section, json_block, write_report
from probes.errors import IclensError
from probes.models import resolve_device
from probes.results import versions, write_json
from toy_models.linreg_experiment import (LinRegRunConfig, error_vs_k, load_run, lsa_summary, run_training,
                                          shift_sweep)
from toy_models.tasks.linreg import SHIFTS
from toy_models.train import check_run_dir


def _sweep_section(sweep: dict, names: str) -> Section:
    return Section(
        "Distribution shifts",
        f"Error at the last k of {names}, relative to predicting 0 (1 = no better than 0), under task shift "
        "(w scaled by c), query shift (only the query x scaled) and covariate shift (every x scaled). "
        "Zhang et al. predict that the LSA tolerates task and query shift and fails covariate shift.",
        [toyfig.shift_sweep(sweep)])


def build_linreg_report(out: Path, result: dict) -> Path:
    """report.html for a linreg run from its result dict (training curve, error vs k, shifts, LSA or probes)."""
    cfg = result["config"]["run"]
    curve = result["error_vs_k"]
    sections = [
        Section("Training", "Per-step loss on fresh prompts; the eval lines are the normalised error at k = d, at "
                "the last k and averaged over k, on fixed prompts.",
                [toyfig.training_curve(result["losses"], result["evals"])]),
        Section("Error vs number of in-context examples",
                "Normalised squared error (y_hat - y)^2 / d on the same prompts for the model and every baseline "
                "(Garg et al. Fig. 2). Least squares is optimal for noiseless Gaussian w.",
                [toyfig.error_vs_k(curve, f"{cfg['model'].upper()}, d = {cfg['d']}", d=cfg["d"])]),
        _sweep_section(result["shifts"], "this run"),
    ]
    if "lsa" in result:
        s = result["lsa"]
        sections.append(Section(
            "LSA against the closed form",
            f"Zhang, Frei & Bartlett Thm 4.1: the global minimum predicts x_q^T Gamma^-1 (1/N sum y_i x_i); for Lambda = I "
            f"the learned matrix is N/(N+d+1) I = {s['scale_closed_form']:.4f} I (learned mean diagonal "
            f"{s['scale_learned_mean']:.4f}) and the test error at M = N is d(d+1)/(N+d+1) = "
            f"{s['test_error_closed_form']:.4f} (measured {s['test_error_learned']:.4f}).",
            [toyfig.matrix_heatmap(s["effective_matrix"], "learned u * W_KQ[:d, :d]^T")]))
    if "mechanism" in result:
        m = result["mechanism"]
        sections.append(Section(
            "Mechanism: attention and example attribution",
            f"Attention from the query x token (head-mean over prompts) and, per in-context example, gradient x input "
            f"at hook_embed and the leave-one-out effect of ablating the example at hook_embed, next to least "
            f"squares' leave-one-out effect on the same prompts (correlation r = {m['loo_correlation']:.3f}).",
            [toyfig.query_attention(m["query_attention"], f"attention from the query at k = {m['k']}"),
             toyfig.attribution_bars({"grad x input": m["grad_x_input"], "leave-one-out (model)": m["loo_model"],
                                      "leave-one-out (least squares)": m["loo_least_squares"]},
                                     "which examples the prediction reads")]))
    sections.append(Section("Config", "", [json_block(result["config"])]))
    facts = {"model": cfg["model"], "d": cfg["d"], "steps": result["steps_done"],
             "steps/s": round(result["steps_per_s"], 2), "max gap to least squares": round(result["max_gap_to_ls"], 4),
             "final loss (mean of last 100)": round(sum(result["losses"][-100:]) / len(result["losses"][-100:]), 5)}
    return write_report(out / "report.html", f"In-context linear regression: {cfg['model']}", sections, facts)


@train_app.command("linreg")
def train_linreg(
    model: str = typer.Option("gpt", "--model", help="gpt (Garg et al.) or lsa (Zhang, Frei & Bartlett)."),
    d: int = typer.Option(5, "--d", help="Input dimension (5 is the CPU preset, 20 the GPU preset)."),
    steps: int = typer.Option(0, "--steps", help="Optimiser steps (0: preset, 19000 for gpt: ~14 min on one core)."),
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, result.json, report.html."),
    resume: bool = typer.Option(False, "--resume", help="Continue the killed run in --out (same options)."),
    n_layers: int = typer.Option(5, "--n-layers"),
    n_heads: int = typer.Option(4, "--n-heads"),
    d_model: int = typer.Option(64, "--d-model"),
    attn_only: bool = typer.Option(True, "--attn-only/--mlp", help="gpt: attention-only blocks (preset) or with MLPs."),
    n_points: int = typer.Option(0, "--n-points", help="Points per prompt (0: 2d+2 for gpt, 21 for lsa)."),
    batch_size: int = typer.Option(0, "--batch-size", help="0: preset (128 gpt, 1000 lsa)."),
    lr: float = typer.Option(0.0, "--lr", help="0: preset (2e-3 gpt AdamW, 0.01 lsa SGD)."),
    curriculum: bool = typer.Option(True, "--curriculum/--no-curriculum", help="Garg et al.'s dims/points curriculum (gpt)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every"),
    eval_prompts: int = typer.Option(2000, "--eval-prompts", help="Prompts for the final curves and shifts."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Train a linear-regression ICL model; writes checkpoints, result.json and report.html into --out."""
    cfg = LinRegRunConfig(model=model, d=d, steps=steps, n_points=n_points, batch_size=batch_size, lr=lr,
                          n_layers=n_layers, n_heads=n_heads, d_model=d_model, attn_only=attn_only,
                          curriculum=curriculum, seed=seed,
                          checkpoint_every=checkpoint_every)
    if eval_prompts < 10:
        raise IclensError(f"--eval-prompts must be >= 10 (got {eval_prompts}).")
    dev = resolve_device(device)
    from toy_models.linreg_experiment import run_config_dict

    check_run_dir(out, run_config_dict(cfg), resume=resume)  # before anything is written
    out = prepare_out(out)
    if dev.type == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    t0 = time.perf_counter()
    trained, res = run_training(cfg, out, resume=resume, device=dev)
    result = summarize_run(trained, cfg, res, eval_prompts=eval_prompts, device=dev)
    result["wall_s"] = time.perf_counter() - t0
    write_json(out / "result.json", result)
    build_linreg_report(out, result)
    typer.echo(f"max gap to least squares over k: {result['max_gap_to_ls']:.4f}; wrote {out / 'result.json'} "
               f"and {out / 'report.html'}")


def summarize_run(model, cfg: LinRegRunConfig, res, *, eval_prompts: int, device) -> dict:
    """The result dict of a run: curves vs k, shift sweep, LSA closed-form check or mechanism probes."""
    from toy_models.linreg_experiment import run_config_dict

    curve = error_vs_k(model, cfg, n_prompts=eval_prompts, device=device)
    k_last = cfg.n_points - 1
    result = {
        "config": run_config_dict(cfg), "versions": versions(), "steps_done": res.steps_done,
        "steps_per_s": res.steps_per_s, "elapsed_s": res.elapsed_s, "resumed_from": res.resumed_from,
        "losses": res.losses, "evals": res.evals,
        "error_vs_k": curve,
        "max_gap_to_ls": max(a - b for a, b in zip(curve["model"], curve["least squares"])),
        "shifts": shift_sweep({cfg.model: model}, {cfg.model: cfg}, k=min(k_last, 2 * cfg.d + 1),
                              n_prompts=max(10, eval_prompts // 2), device=device),
    }
    if cfg.model == "lsa":
        result["lsa"] = lsa_summary(model.cpu(), cfg, n_prompts=max(1000, eval_prompts * 5))
    else:
        from toy_models.mechanism import probe_mechanism

        result["mechanism"] = probe_mechanism(model, cfg.task_config(), n_prompts=min(256, eval_prompts)).__dict__
    return result


@eval_app.command("linreg")
def eval_linreg(
    run: Path = typer.Option(..., "--run", help="A run folder written by `iclens train linreg`."),
    shift: str = typer.Option("none", "--shift", help="none, task, query or covariate."),
    scale: float = typer.Option(1.0, "--scale", help="Shift scale c (w, query x or every x multiplied by c)."),
    k: int = typer.Option(-1, "--k", help="Largest number of in-context examples (-1: the run's context)."),
    n_prompts: int = typer.Option(2000, "--n-prompts"),
    as_json: bool = typer.Option(False, "--json", help="Print the curves as JSON (else a table)."),
    out: Path | None = typer.Option(None, "--out", help="Also write result.json here."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Error vs k of a trained run and every baseline, optionally under a distribution shift."""
    if shift not in SHIFTS:
        raise IclensError(f"unknown --shift {shift!r}: use one of {', '.join(SHIFTS)}.")
    if scale <= 0:
        raise IclensError(f"--scale must be > 0 (got {scale}).")
    if n_prompts < 1:
        raise IclensError(f"--n-prompts must be >= 1 (got {n_prompts}).")
    if out is not None:
        out = prepare_out(out)
    dev = resolve_device(device)
    model, cfg, step = load_run(run, device=dev)
    k_max = None if k < 0 else k
    curve = error_vs_k(model, cfg, shift=shift, scale=scale, n_prompts=n_prompts, k_max=k_max, seed=1234 + seed,
                       device=dev)
    payload = {"run": str(run), "checkpoint_step": step, "model": cfg.model, "d": cfg.d, "shift": shift,
               "scale": scale, "k": list(range(len(curve["model"]))), "error": curve}
    if out is not None:
        write_json(out / "result.json", {**payload, "versions": versions()})
    if as_json:
        typer.echo(json.dumps(payload))
        return
    typer.echo(f"{'k':>3} " + " ".join(f"{n[:12]:>12}" for n in curve))
    for i in payload["k"]:
        typer.echo(f"{i:>3} " + " ".join(f"{curve[n][i]:>12.4f}" for n in curve))


@report_app.command("linreg-shifts")
def report_linreg_shifts(
    runs: list[Path] = typer.Option(..., "--run", help="Run folders to compare (repeat: --run A --run B)."),
    out: Path = typer.Option(..., "--out"),
    k: int = typer.Option(-1, "--k", help="In-context examples before the query (-1: min over runs of 2d+1 / context)."),
    n_prompts: int = typer.Option(1000, "--n-prompts"),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Several runs (e.g. LSA and GPT) side by side under task, query and covariate shift."""
    out = prepare_out(out)
    dev = resolve_device(device)
    models, cfgs = {}, {}
    for r in runs:
        m, c, _ = load_run(r, device=dev)
        name = f"{c.model} ({Path(r).name})"
        models[name], cfgs[name] = m, c
    k_ctx = min(c.n_points - 1 for c in cfgs.values())
    k_use = min(k_ctx, min(2 * c.d + 1 for c in cfgs.values())) if k < 0 else k
    if not 1 <= k_use <= k_ctx:
        raise IclensError(f"--k {k} exceeds the context of the runs: choose 1 <= k <= {k_ctx}.")
    if len({c.d for c in cfgs.values()}) > 1:
        raise IclensError("the runs have different d: compare runs trained on the same dimension.")
    del seed
    sweep = shift_sweep(models, cfgs, k=k_use, n_prompts=n_prompts, device=dev)
    write_json(out / "result.json", {"runs": [str(r) for r in runs], "k": k_use, "shifts": sweep,
                                     "versions": versions()})
    write_report(out / "report.html", "Linear regression ICL under distribution shift",
                 [_sweep_section(sweep, ", ".join(models))], {"k": k_use, "runs": len(runs)})
    typer.echo(f"wrote {out / 'result.json'} and {out / 'report.html'}")
