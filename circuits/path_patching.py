"""Path patching: the effect of a sender head on the task *through* chosen receiver heads only.

Wang et al. (2022, "Interpretability in the Wild", sec. 3 and appendix B);
Goldowsky-Dill et al. (2023, "Localizing model behavior with path patching").
Denoising form, matching `circuits.patching`:

1. Run the corrupted prompts, write the sender head's *clean* output z into its
   slot and freeze every other head's z at its corrupted value (MLPs recompute),
   and record the receivers' queries / keys / values (hook_q / hook_k / hook_v).
2. Run the corrupted prompts again with only those receiver inputs overwritten by
   the recorded values, and score the normalised metric.

The score reads "fraction of the clean behaviour restored by the sender's signal
arriving at the receivers' q (or k, or v)". Many senders are evaluated in the same
forward passes (one batched variant per sender, through `run_variants`).
With grouped-query attention a receiver's key/value head is shared by its query
group, so patching k or v there patches the whole group's input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuits.metrics import NormalisedLogitDiff
from circuits.patching import Patch, cache_hooks, run_variants, task_metric
from circuits.tasks import PatchTask
from probes.errors import IclensError

VIA = ("q", "k", "v")


@dataclass
class PathResult:
    """scores[i, j]: sender i -> all receivers, through input VIA[j] (normalised metric)."""

    senders: list[tuple[int, int]]
    receivers: list[tuple[int, int]]
    via: list[str]
    scores: np.ndarray
    clean_ld: float
    corrupted_ld: float


def _kv_group(model, head: int, via: str) -> int:
    if via == "q":
        return head
    n_kv = int(getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)
    return head // (model.cfg.n_heads // n_kv)


def path_patch(model, task: PatchTask, senders: list[tuple[int, int]], receivers: list[tuple[int, int]], *,
               via: tuple[str, ...] | list[str] = VIA, metric: NormalisedLogitDiff | None = None,
               max_batch: int = 256) -> PathResult:
    """Score each sender head -> {receivers} path through each of the receivers' inputs in `via`.

    Args:
        senders: (layer, head) pairs; each must sit in an earlier layer than every receiver.
        receivers: (layer, head) pairs whose q / k / v receive the sender's clean signal.
        via: any of "q", "k", "v"; each is scored separately.
    Returns:
        PathResult with scores [n_senders, len(via)].
    """
    via = list(via)
    if not senders or not receivers or not via or any(x not in VIA for x in via):
        raise IclensError("path_patch needs >= 1 sender, >= 1 receiver and via among 'q', 'k', 'v'.")
    L, H = model.cfg.n_layers, model.cfg.n_heads
    for l, h in senders + receivers:
        if not (0 <= l < L and 0 <= h < H):
            raise IclensError(f"head ({l}, {h}) does not exist: layers 0..{L - 1}, heads 0..{H - 1}.")
    if max(l for l, _ in senders) >= min(l for l, _ in receivers):
        raise IclensError("every sender must be in an earlier layer than every receiver (path patching follows the residual stream).")
    metric = metric or task_metric(model, task)
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(L)]
    clean = cache_hooks(model, task.clean, z_names)
    corr = cache_hooks(model, task.corrupted, z_names)
    sources = {f"clean:{n}": clean[n] for n in z_names} | {f"corr:{n}": corr[n] for n in z_names}
    recv_hooks = sorted({f"blocks.{l}.attn.hook_{x}" for l, _ in receivers for x in via})

    # Step 1: one variant per sender; freeze all heads to corrupted, then the sender to clean.
    freeze = [Patch(n, (), f"corr:{n}") for n in z_names]
    step1 = [freeze + [Patch(z_names[l], (None, h), f"clean:{z_names[l]}")] for l, h in senders]
    _, rec = run_variants(model, task.corrupted, step1, sources, lambda lg: lg.new_zeros(()), max_batch=max_batch,
                          record=recv_hooks)
    b = task.n_prompts
    scores = np.zeros((len(senders), len(via)))
    for j, x in enumerate(via):
        # Step 2: per sender, overwrite the receivers' inputs with what step 1 recorded.
        srcs, variants = {}, []
        for i in range(len(senders)):
            patches = []
            for l, h in receivers:
                name = f"blocks.{l}.attn.hook_{x}"
                key = f"s{i}:{name}"
                srcs[key] = rec[name][i * b:(i + 1) * b]
                patches.append(Patch(name, (None, _kv_group(model, h, x)), key))
            variants.append(patches)
        vals, _ = run_variants(model, task.corrupted, variants, srcs, lambda lg: metric(lg, task.answer, task.wrong),
                               max_batch=max_batch)
        scores[:, j] = vals.numpy()
    return PathResult(list(senders), list(receivers), via, scores, metric.clean_ld, metric.corrupted_ld)
