"""Zero, mean and resample ablation of heads, MLPs and residual positions; knock-out helpers.

Ablation replaces a component's output with an uninformative value and measures
what the task loses (Olsson et al. 2022; Wang et al. 2022 use mean ablation;
Chan et al. 2022, "Causal scrubbing", argue for resample ablation: the value the
component takes on *another* input, which stays on-distribution):

- ``zero``: the activation set to 0 (simple, often off-distribution);
- ``mean``: its mean over a reference set of prompts, per position;
- ``resample``: its value on a reference prompt drawn at random (default
  reference: the task's corrupted prompts).

Components are named ``L{layer}H{head}`` (a head's z at every position),
``M{layer}`` (an MLP's output) and ``R{layer}P{pos}`` (the residual stream entering
`layer` at one position). Everything runs through `patching.run_variants`, so a
whole ablation curve is a few batched forward passes.
"""

from __future__ import annotations

import re

import torch
from jaxtyping import Int

from circuits.metrics import NormalisedLogitDiff
from circuits.patching import Patch, cache_hooks, run_variants, task_metric
from circuits.tasks import PatchTask
from probes.errors import IclensError

ABLATIONS = ("zero", "mean", "resample")
_COMPONENT = re.compile(r"^(?:L(\d+)H(\d+)|M(\d+)|R(\d+)P(\d+))$")


def component_patch(model, name: str) -> Patch:
    """'L3H1' -> head z, 'M3' -> MLP out, 'R3P5' -> resid_pre of layer 3 at position 5."""
    m = _COMPONENT.match(name)
    if not m:
        raise IclensError(f"unknown component {name!r}: use L<layer>H<head>, M<layer> or R<layer>P<pos>.")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    layer = int(next(g for g in m.groups() if g is not None))
    if layer >= L:
        raise IclensError(f"component {name!r}: the model has layers 0..{L - 1}.")
    if m.group(1) is not None:
        if int(m.group(2)) >= H:
            raise IclensError(f"component {name!r}: the model has heads 0..{H - 1}.")
        return Patch(f"blocks.{layer}.attn.hook_z", (None, int(m.group(2))), f"ablate:blocks.{layer}.attn.hook_z")
    if m.group(3) is not None:
        return Patch(f"blocks.{layer}.hook_mlp_out", (), f"ablate:blocks.{layer}.hook_mlp_out")
    return Patch(f"blocks.{layer}.hook_resid_pre", (int(m.group(5)), None), f"ablate:blocks.{layer}.hook_resid_pre")


def all_heads(model) -> list[str]:
    return [f"L{l}H{h}" for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]


def ablation_sources(model, tokens: Int[torch.Tensor, "batch pos"], hooks: list[str], method: str,
                     reference: Int[torch.Tensor, "_ref _pos"] | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """Replacement activations [batch, ...] for `hooks` when running `tokens`, keyed 'ablate:<hook>'.

    Args:
        method: 'zero', 'mean' (over `reference`, per position) or 'resample' (rows of
            `reference` drawn at random with `seed`).
        reference: prompts of the same token length as `tokens`; required for mean/resample.
    """
    if method not in ABLATIONS:
        raise IclensError(f"unknown ablation {method!r}: use one of {', '.join(ABLATIONS)}.")
    b = tokens.shape[0]
    if method == "zero":
        return {f"ablate:{n}": torch.zeros_like(a) for n, a in cache_hooks(model, tokens, hooks).items()}
    if reference is None or reference.ndim != 2 or reference.shape[0] == 0:
        raise IclensError(f"{method} ablation needs a non-empty reference set of prompts: pass reference tokens [n, pos] with n >= 1.")
    if reference.shape[1] != tokens.shape[1]:
        raise IclensError(f"reference prompts have {reference.shape[1]} tokens but the ablated run has {tokens.shape[1]}: "
                          "use reference prompts of the same token length.")
    ref = cache_hooks(model, reference, hooks)
    if method == "mean":
        return {f"ablate:{n}": a.mean(0, keepdim=True).expand(b, *a.shape[1:]).clone() for n, a in ref.items()}
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, reference.shape[0], (b,), generator=g).to(reference.device)
    return {f"ablate:{n}": a[rows] for n, a in ref.items()}


def knock_out_sources(model, task: PatchTask, components: list[str], *, method: str = "resample",
                      reference: torch.Tensor | None = None, on: str = "clean", seed: int = 0) -> dict[str, torch.Tensor]:
    """The ablation values every component in `components` would use; reuse them across many knock-outs."""
    if on not in ("clean", "corrupted"):
        raise IclensError(f"unknown run {on!r}: ablate on 'clean' or 'corrupted'.")
    tokens = task.clean if on == "clean" else task.corrupted
    hooks = sorted({component_patch(model, c).hook for c in components}) or ["blocks.0.hook_resid_pre"]
    reference = task.corrupted if reference is None and method == "resample" else reference
    return ablation_sources(model, tokens, hooks, method, reference, seed)


def knock_out_many(model, task: PatchTask, component_sets: list[list[str]], *, method: str = "resample",
                   reference: torch.Tensor | None = None, on: str = "clean", metric: NormalisedLogitDiff | None = None,
                   seed: int = 0, max_batch: int = 256, sources: dict[str, torch.Tensor] | None = None) -> list[float]:
    """Normalised task metric with each set of components ablated together (one batched evaluation).

    `sources`: precomputed `knock_out_sources(...)` covering these components (skips one forward pass).
    """
    metric = metric or task_metric(model, task)
    if sources is None:
        sources = knock_out_sources(model, task, sorted({c for s in component_sets for c in s}), method=method,
                                    reference=reference, on=on, seed=seed)
    tokens = task.clean if on == "clean" else task.corrupted
    variants = [[component_patch(model, c) for c in names] for names in component_sets]
    vals, _ = run_variants(model, tokens, variants, sources, lambda lg: metric(lg, task.answer, task.wrong),
                           max_batch=max_batch)
    return [float(v) for v in vals]


def knock_out(model, task: PatchTask, components: list[str], **kw) -> float:
    """Normalised task metric (clean run = 1, corrupted = 0) with `components` ablated together."""
    return knock_out_many(model, task, [list(components)], **kw)[0]


def ablation_curve(model, task: PatchTask, order: list[str], ks: list[int] | None = None, **kw) -> list[float]:
    """Metric after ablating the first k components of `order`, for k in `ks` (default 0 .. len(order))."""
    ks = list(range(len(order) + 1)) if ks is None else ks
    return knock_out_many(model, task, [order[:k] for k in ks], **kw)
