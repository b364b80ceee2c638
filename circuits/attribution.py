"""Attribution patching: a first-order estimate of every activation patch from one backward pass.

Node form (Nanda 2023, "Attribution patching: activation patching at industrial
scale"; Syed, Rager & Conmy 2023): patching activation ``a`` from the corrupted
value to the clean one changes the metric by approximately

    (a_clean - a_corrupted) . d metric / d a   (gradient taken on the corrupted run)

so one clean forward (cache), one corrupted forward and one backward give an
estimate for every component of any `Sweep` from `circuits.patching` (the same
strategy functions). Where the metric is linear in the patched activation the
estimate is exact.

Edge form (EAP, Syed et al. 2023; Hanna et al. 2024): for an upstream node u
(embedding, attention head or layer, MLP) writing ``delta_u`` into the residual
stream and a downstream node v reading it,

    score(u -> v) = sum over prompts and positions of delta_u . d metric / d input_v.

The gradient through one node's input alone is read from the branch-input hooks
(``ln1.hook_in`` / ``ln2.hook_in`` on a TransformerBridge) or, on models whose
resid hooks sit on the residual stream, as ``g(resid_pre L) - g(resid_mid L)``
(attention) and ``g(resid_mid L) - g(resid_post L)`` (MLP); logits read
``g(resid_post last)``. Upstream
heads are split per head only where the attention output is exactly ``sum_h z_h
W_O[h]`` (checked on the cache; Gemma 3's post-attention norm breaks it, so there
the node is the whole attention layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from circuits.metrics import NormalisedLogitDiff
from circuits.patching import PatchResult, Sweep, cache_hooks, check_hook_names, last_logits, task_metric
from circuits.tasks import PatchTask


@contextmanager
def _grads_enabled(model):
    """Activations must require grad; parameters are switched on and restored (autograd.grad skips their grads)."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def metric_grads(model, task: PatchTask, names: list[str], metric: Callable[..., torch.Tensor],
                 tokens: torch.Tensor | None = None) -> tuple[float, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Metric value, activations and d metric / d activation at `names` on the (corrupted) run."""
    check_hook_names(model, names)
    tokens = task.corrupted if tokens is None else tokens
    acts: dict[str, torch.Tensor] = {}

    def make(name):
        def hook(x, hook):
            # Return a new tensor: some bridge hooks (hook_z) feed the model the pre-hook tensor
            # when a hook returns None, which would leave the stored one off the graph.
            acts[name] = x.clone()
            return acts[name]
        return hook

    with _grads_enabled(model):
        logits = last_logits(model, tokens, [(n, make(n)) for n in names])
        value = metric(logits, task.answer, task.wrong)
        grads = torch.autograd.grad(value, [acts[n] for n in names], allow_unused=True)
    out_g = {n: (torch.zeros_like(acts[n]) if g is None else g.detach()) for n, g in zip(names, grads)}
    return float(value.detach()), {n: a.detach() for n, a in acts.items()}, out_g


def attribution_patch(model, task: PatchTask, sweep: Sweep, *, metric: NormalisedLogitDiff | None = None) -> PatchResult:
    """Linear estimate of `activation_patch(model, task, sweep)` (denoising), same layout and scale."""
    t0 = time.perf_counter()
    metric = metric or task_metric(model, task)
    clean = cache_hooks(model, task.clean, sweep.hooks)
    base, corr, grad = metric_grads(model, task, sweep.hooks, metric)
    # One product per hook, then each variant sums the slots it patches.
    prod = {n: (clean[n] - corr[n]) * grad[n] for n in sweep.hooks}
    est = np.array([base + sum(float(prod[p.hook][p.slices()].sum()) for p in v) for v in sweep.variants])
    return PatchResult(sweep.name, "attribution", sweep.axes, est.reshape(sweep.shape), metric.clean_ld,
                       metric.corrupted_ld, time.perf_counter() - t0, n_forward=4)


# ----------------------------------------------------------------------------- edges (EAP)


@dataclass
class EdgeResult:
    """EAP scores: edges[i] = (upstream, downstream, score); node names L{l}H{h}, A{l}, M{l}, embed, logits."""

    edges: list[tuple[str, str, float]]
    per_head: bool
    seconds: float

    def top(self, k: int = 20) -> list[tuple[str, str, float]]:
        return sorted(self.edges, key=lambda e: -abs(e[2]))[:k]


def heads_decompose(model, cache: dict[str, torch.Tensor], layer: int) -> bool:
    """True when attn_out == sum_h z_h W_O[h] (+ b_O) at `layer`, i.e. heads write linearly to the residual."""
    z, out = cache[f"blocks.{layer}.attn.hook_z"], cache[f"blocks.{layer}.hook_attn_out"]
    attn = model.blocks[layer].attn
    rec = torch.einsum("bphd,hdm->bpm", z, attn.W_O.to(z.dtype))
    b = getattr(attn, "b_O", None)
    if isinstance(b, torch.Tensor):
        rec = rec + b
    return bool((rec - out).abs().max() <= 1e-4 * (1 + out.abs().max()))


def _reader_inputs(model, layer: int) -> dict[str, tuple[str, str | None]]:
    """How to read d metric / d (input of attn `layer`) and (input of mlp `layer`): (hook, minus-hook or None).

    On a TransformerBridge `hook_resid_mid` is an alias of `ln2.hook_in`, the MLP branch's own
    input, and `ln1.hook_in` is the attention branch's: their gradients are the node-input
    gradients directly. On models whose resid hooks sit on the residual stream itself
    (TransformerLens-style toy models) a node's input gradient is the difference of the
    residual gradients before and after the node.
    """
    d = model.hook_dict
    pre, mid, post = (f"blocks.{layer}.hook_resid_{p}" for p in ("pre", "mid", "post"))
    ln1, ln2 = f"blocks.{layer}.ln1.hook_in", f"blocks.{layer}.ln2.hook_in"
    mid_is_branch = mid in d and ln2 in d and d[mid] is d[ln2]
    has_mlp = f"blocks.{layer}.hook_mlp_out" in d
    out: dict[str, tuple[str, str | None]] = {}
    if ln1 in d and d[ln1] is not d[pre]:
        out["A"] = (ln1, None)
    else:
        out["A"] = (pre, mid if (mid in d and not mid_is_branch) else post)
    if has_mlp:
        if mid_is_branch or (ln2 in d and d[ln2] is not d.get(mid)):
            out["M"] = (ln2, None)
        elif mid in d:
            out["M"] = (mid, post)
    return out


def edge_attribution(model, task: PatchTask, *, metric: NormalisedLogitDiff | None = None) -> EdgeResult:
    """EAP scores for every (upstream node -> later downstream node) edge, from one backward pass."""
    t0 = time.perf_counter()
    metric = metric or task_metric(model, task)
    L = model.cfg.n_layers
    readers = [_reader_inputs(model, l) for l in range(L)]
    has_mlp = all("M" in r for r in readers)
    grad_names = {n for r in readers for pair in r.values() for n in pair if n}
    grad_names |= {"blocks.0.hook_resid_pre", f"blocks.{L - 1}.hook_resid_post"}
    outs = [f"blocks.{l}.attn.hook_z" for l in range(L)] + [f"blocks.{l}.hook_attn_out" for l in range(L)]
    outs += [f"blocks.{l}.hook_mlp_out" for l in range(L)] if has_mlp else []
    names = sorted(grad_names | set(outs))
    clean = cache_hooks(model, task.clean, names)
    _, corr, grad = metric_grads(model, task, names, metric)
    per_head = all(heads_decompose(model, clean, l) for l in range(L))

    # Upstream nodes in residual order, with their output difference (clean - corrupted) in d_model.
    ups: list[tuple[str, float, torch.Tensor]] = [("embed", -1.0, clean["blocks.0.hook_resid_pre"] - corr["blocks.0.hook_resid_pre"])]
    for l in range(L):
        if per_head:
            dz = clean[f"blocks.{l}.attn.hook_z"] - corr[f"blocks.{l}.attn.hook_z"]
            w = model.blocks[l].attn.W_O.detach().to(dz.dtype)
            for h in range(model.cfg.n_heads):
                ups.append((f"L{l}H{h}", l, dz[:, :, h] @ w[h]))
        else:
            ups.append((f"A{l}", l, clean[f"blocks.{l}.hook_attn_out"] - corr[f"blocks.{l}.hook_attn_out"]))
        if has_mlp:
            ups.append((f"M{l}", l + 0.5, clean[f"blocks.{l}.hook_mlp_out"] - corr[f"blocks.{l}.hook_mlp_out"]))

    def g(pair):
        a, b = pair
        return grad[a] if b is None else grad[a] - grad[b]

    downs: list[tuple[str, float, torch.Tensor]] = []
    for l, r in enumerate(readers):
        downs.append((f"A{l}", l, g(r["A"])))
        if has_mlp:
            downs.append((f"M{l}", l + 0.5, g(r["M"])))
    downs.append(("logits", float(L), grad[f"blocks.{L - 1}.hook_resid_post"]))

    edges = [(u, v, float((du * gv).sum())) for u, ou, du in ups for v, ov, gv in downs if ov > ou]
    return EdgeResult(edges, per_head, time.perf_counter() - t0)


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Spearman and Pearson correlation between two score arrays of the same shape (flattened)."""
    from scipy.stats import pearsonr, spearmanr

    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if x.size < 3 or np.std(x) == 0 or np.std(y) == 0:
        return {"spearman": float("nan"), "pearson": float("nan"), "n": int(x.size)}
    return {"spearman": float(spearmanr(x, y)[0]), "pearson": float(pearsonr(x, y)[0]), "n": int(x.size),
            "max_abs_diff": float(np.abs(x - y).max())}
