"""Benchmarks for circuits.patching / circuits.attribution, measured side by side in one run.

1. Head-level attribution patching vs the full activation-patching head sweep on the
   IOI task: wall-clock ratio (target >= 10x) and rank agreement (target Spearman >= 0.8).
2. Batched activation patching (many patched variants per forward pass) vs one
   forward pass per component: wall-clock ratio, and the two must give the same numbers.

    python bench/bench_patching.py                     # gemma-3-270m, 16 IOI prompts
    python bench/bench_patching.py --model tiny-llama  # quick smoke run
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from circuits.attribution import agreement, attribution_patch
from circuits.patching import activation_patch, head_sweep, task_metric
from circuits.tasks import make_task
from probes.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--task", default="ioi")
    ap.add_argument("--n-prompts", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=128, help="sequences per forward in the batched sweep")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-single", action="store_true", help="skip the one-forward-per-component sweep")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.model, device=args.device)
    task = make_task(model, args.task, n=args.n_prompts)
    metric = task_metric(model, task)
    sweep = head_sweep(model)
    print(f"{args.model}: {model.cfg.n_layers} layers x {model.cfg.n_heads} heads, task {args.task}, "
          f"{task.n_prompts} prompts x {task.n_pos} tokens, clean LD {metric.clean_ld:.3f}, corrupted LD {metric.corrupted_ld:.3f}")

    attribution_patch(model, task, sweep, metric=metric)  # warm-up (allocator, first-call overheads)
    t0 = time.perf_counter()
    approx = attribution_patch(model, task, sweep, metric=metric).values
    t_attr = time.perf_counter() - t0
    t0 = time.perf_counter()
    exact = activation_patch(model, task, sweep, metric=metric, max_batch=args.max_batch, progress=True).values
    t_batched = time.perf_counter() - t0
    ag = agreement(exact, approx)
    print(f"attribution (1 fwd clean + 1 fwd/bwd corrupted): {t_attr:.2f} s")
    print(f"activation sweep, batched ({len(sweep.variants)} variants, {args.max_batch} seqs/forward): {t_batched:.2f} s")
    print(f"RATIO activation/attribution wall = {t_batched / t_attr:.1f}x; Spearman {ag['spearman']:.3f}, "
          f"Pearson {ag['pearson']:.3f} over {ag['n']} heads")
    top = np.argsort(-np.abs(exact).ravel())[:5]
    print("top heads (exact / attribution):",
          ", ".join(f"L{i // model.cfg.n_heads}H{i % model.cfg.n_heads} {exact.ravel()[i]:.3f}/{approx.ravel()[i]:.3f}" for i in top))

    if not args.skip_single:
        t0 = time.perf_counter()
        single = activation_patch(model, task, sweep, metric=metric, max_batch=task.n_prompts, progress=True).values
        t_single = time.perf_counter() - t0
        print(f"activation sweep, one forward per component: {t_single:.2f} s")
        print(f"RATIO single/batched wall = {t_single / t_batched:.2f}x; max |diff| {np.abs(single - exact).max():.2e}")


if __name__ == "__main__":
    main()
