"""Which strategy answers which words: in-context use by frequency rank on the POS task.

Anand et al.'s dual process is a statement about word frequency: frequent words answered from the weights, rare and
unseen ones from the context. `context_use_by_rank` measures it word class by word class: it puts the unambiguous words
of each frequency-rank bin in the role opposite to their training role, where the context and the weights disagree,
and records how often the model follows the context (1: always in context, 0: always from the weights).

`query_attention` looks at the mechanism: the in-context strategy needs a head that takes the query (the last token) to
its own earlier occurrence, whose side of the copula the answer is; a head on the copula alone gives only the position
prior (0.7). It records, per eval set, how much each head of each layer attends from the query to the occurrence and to
the copula, so one sees whether unseen words still get matched.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from probes.errors import IclensError
from toy_models.tasks.pos import N_CONTEXT, POSTask, fresh_embeddings, pos_accuracy, role_accuracy

QUERY_ATTENTION_SETS = ("tail", "switched", "switched_tail", "heldout", "ambiguous")


def rank_bins(half: int, n_bins: int = 6) -> list[tuple[int, int]]:
    """Log-spaced [lo, hi) bins over the ranks 0..half-1 of one role (empty bins merged away)."""
    if half < 1 or n_bins < 1:
        raise IclensError(f"rank bins need half >= 1 and n_bins >= 1 (got {half}, {n_bins}).")
    edges = torch.logspace(0, torch.log10(torch.tensor(float(half))).item(), n_bins + 1).round().long() - 1
    edges[0], edges[-1] = 0, half
    cuts = sorted(set(edges.tolist()))
    return list(zip(cuts[:-1], cuts[1:]))


def context_use_by_rank(model: nn.Module, task: POSTask, *, n_bins: int = 6, size: int = 500,
                        seed: int = 777) -> list[dict[str, Any]]:
    """Per frequency-rank bin: the accuracy on its unambiguous words placed in the opposite role ("context": the share
    answered from the context), the bin's share of the training word slots ("mass") and its number of words.
    Bins without unambiguous words, or leaving fewer than 5 other unambiguous words per role to fill the contexts (tiny
    vocabularies), are skipped."""
    half = task.cfg.n_words // 2
    n_clean = int((~task.ambiguous).sum()) // 2
    out = []
    for lo, hi in rank_bins(half, n_bins):
        clean = ~task.ambiguous & (task.rank >= lo) & (task.rank < hi)
        n_words = int(clean.sum()) // 2
        if n_words < 1 or n_clean - n_words < N_CONTEXT:
            continue
        acc = pos_accuracy(task, model, task.opposite_role_batch(clean.nonzero()[:, 0], size, seed=seed + lo))
        mass = float(task.weight[(task.rank >= lo) & (task.rank < hi)].sum() / task.weight.sum())
        out.append({"lo": lo, "hi": hi, "context": acc, "mass": mass, "n_words": n_words})
    return out


def query_attention(model: nn.Module, task: POSTask, *, kinds: tuple[str, ...] | None = None, size: int = 500,
                    seed: int = 99, draws: int = 4) -> dict[str, dict[str, Any]]:
    """Per eval set: the accuracy, and per layer and head the mean attention from the query (last position) to its own
    earlier occurrence ("match") and to the copula ("copula"), as [layer][head] lists. The query's attention to itself
    is part of neither. Held-out words get fresh embedding rows at the model's initialisation scale (`embed_std`), as
    in the training-time evaluation, averaged over `draws` draws. kinds: default QUERY_ATTENTION_SETS, without
    "ambiguous" when the vocabulary has no ambiguous words."""
    if draws < 1:
        raise IclensError(f"draws must be >= 1 (got {draws}).")
    if kinds is None:
        kinds = tuple(k for k in QUERY_ATTENTION_SETS if k in task.eval_kinds)
    c = task.cfg
    held = range(c.n_words, c.n_words + c.n_heldout)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(len(model.blocks))]
    out = {}
    for kind in kinds:
        batch = task.eval_batch(kind, size, seed=seed)
        toks = batch["tokens"].to(next(model.parameters()).device)
        match = (toks[:, :-1] == toks[:, -1:]).float()  # [batch key]
        cop = (toks[:, :-1] == c.copula).float()
        acc, m, cp = 0.0, 0.0, 0.0
        n = draws if kind == "heldout" else 1
        for j in range(n):
            with torch.no_grad(), (fresh_embeddings(model, held, std=model.cfg.embed_std, seed=seed + j)
                                   if kind == "heldout" else nullcontext()):
                logits, cache = model.run_with_cache(toks, names_filter=lambda name: name in names)
            acc += role_accuracy(logits[:, -1, :], batch["target"]) / n
            pat = torch.stack([cache[name][:, :, -1, :-1] for name in names])  # [layer batch head key]
            m = m + (pat * match[None, :, None]).sum(-1).mean(1) / n
            cp = cp + (pat * cop[None, :, None]).sum(-1).mean(1) / n
        out[kind] = {"accuracy": acc, "match": m.tolist(), "copula": cp.tolist()}
    return out
