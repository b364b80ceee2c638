"""Find the smallest set of heads that keeps a fraction of the task metric, with its faithfulness.

Faithfulness (Wang et al. 2022, sec. 4): the metric of the circuit alone - every
head *outside* the circuit ablated, on the clean prompts - divided by the metric
of the full model (normalised metric: the full clean model scores 1).

Two searches:

- ``greedy`` (backward elimination): start from all heads; at each step remove the
  head whose removal keeps the highest faithfulness, while it stays >= threshold.
  Evaluates every candidate of a step in one batched call; O(n_heads^2) variants,
  so meant for models up to a few dozen heads. Finds AND-circuits (heads that
  only matter together) which forward selection misses.
- ``ranked``: order heads by a score (activation or attribution patching), ablate
  from the least important up (one batched ablation curve), and keep the heads
  left at the longest prefix that still meets the threshold. Linear cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from circuits.ablation import all_heads, knock_out_many, knock_out_sources
from circuits.metrics import NormalisedLogitDiff
from circuits.patching import task_metric
from circuits.tasks import PatchTask
from probes.errors import IclensError


@dataclass
class CircuitResult:
    """The heads found, their faithfulness and the search trace (n removed -> faithfulness)."""

    heads: list[str]
    faithfulness: float
    threshold: float
    method: str
    ablation: str
    trace: list[tuple[int, float]] = field(default_factory=list)
    n_evaluations: int = 0


def _faith(model, task, keep_sets, universe, metric, sources, max_batch) -> list[float]:
    # The full clean model scores 1 on the normalised metric, so faithfulness is the metric itself.
    sets = [[h for h in universe if h not in keep] for keep in keep_sets]
    return knock_out_many(model, task, sets, on="clean", metric=metric, max_batch=max_batch, sources=sources)


def find_circuit(model, task: PatchTask, *, threshold: float = 0.9, method: str = "greedy", ablation: str = "resample",
                 scores: np.ndarray | None = None, reference: torch.Tensor | None = None, seed: int = 0,
                 metric: NormalisedLogitDiff | None = None, max_batch: int = 256) -> CircuitResult:
    """The smallest head set (found by `method`) whose faithfulness is >= `threshold`.

    Args:
        threshold: fraction of the full model's metric the circuit must keep, in (0, 1].
        method: 'greedy' (backward elimination) or 'ranked' (needs `scores` [layer, head]).
        ablation: how heads outside the circuit are removed: 'resample' (default, from the
            corrupted prompts), 'mean' (over `reference`) or 'zero'.
    """
    if not 0 < threshold <= 1:
        raise IclensError(f"threshold {threshold} must be a fraction of the full metric, in (0, 1].")
    if method not in ("greedy", "ranked"):
        raise IclensError(f"unknown circuit search {method!r}: use 'greedy' or 'ranked'.")
    metric = metric or task_metric(model, task)
    universe = all_heads(model)
    sources = knock_out_sources(model, task, universe, method=ablation, reference=reference, seed=seed)
    args = (universe, metric, sources, max_batch)
    if method == "ranked":
        if scores is None or np.asarray(scores).size != len(universe):
            raise IclensError("ranked circuit search needs scores of shape [layer, head] (from activation or attribution patching).")
        order = [universe[i] for i in np.argsort(np.abs(np.asarray(scores, float)).ravel(), kind="stable")]
        faiths = _faith(model, task, [order[k:] for k in range(len(order) + 1)], *args)
        ok = [k for k, f in enumerate(faiths) if f >= threshold]
        k = max(ok) if ok else 0
        return CircuitResult(sorted(order[k:], key=universe.index), faiths[k], threshold, method, ablation,
                             list(enumerate(faiths)), len(faiths))
    keep = list(universe)
    current = _faith(model, task, [keep], *args)[0]
    trace, n_eval = [(0, current)], 1
    while len(keep) > 1:
        cands = _faith(model, task, [[h for h in keep if h != r] for r in keep], *args)
        n_eval += len(cands)
        best = int(np.argmax(cands))
        if cands[best] < threshold:
            break
        keep.pop(best)
        current = cands[best]
        trace.append((len(universe) - len(keep), current))
    return CircuitResult(keep, current, threshold, method, ablation, trace, n_eval)
