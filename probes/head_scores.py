"""Per-head attention scores from attention patterns, one prompt at a time.

Definitions (each a mean of attention weight over the query positions where the
score is defined, so 1.0 means "all attention on the target"):

- previous-token: query t attends to t-1 (over t >= first non-BOS position + 1);
- duplicate-token: on [BOS] R R, a second-copy query attends to the earlier
  copy of its own token;
- induction (Olsson et al. 2022): on [BOS] R R, a second-copy query attends to
  the token *after* the earlier copy of its own token;
- n-gram of order n (Akyürek et al. 2024): attention mass on the positions j whose
  n-1 preceding tokens equal the n-1 tokens ending at the query
  (`probes.prompts.ngram_targets`; n = 2 is the induction target), scored only at
  queries where some "decoy" exists: an earlier duplicate of the current token
  that is not a target, or (n >= 3) a lower-order match that is not a target.
  That is what lets an n-gram head be told apart from an induction head.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int

from probes.prompts import duplicate_positions, ngram_targets


def offset_diagonal_score(
    pattern: Float[torch.Tensor, "batch head pos pos"], offset: int, q_start: int, q_end: int | None = None
) -> Float[torch.Tensor, "batch head"]:
    """Mean over queries q in [q_start, q_end) of pattern[..., q, q - offset]."""
    n = pattern.shape[-1]
    q_end = n if q_end is None else q_end
    q = torch.arange(q_start, q_end)
    return pattern[..., q, q - offset].mean(-1)


def repeated_scores(
    pattern: Float[torch.Tensor, "batch head pos pos"], seq_len: int, bos: bool
) -> dict[str, Float[torch.Tensor, "batch head"]]:
    """previous-token, duplicate-token and induction scores on [BOS] R R prompts."""
    start = 1 if bos else 0  # first position of R
    second = start + seq_len  # first position of the second copy
    return {
        "previous_token": offset_diagonal_score(pattern, 1, start + 1),
        "duplicate_token": offset_diagonal_score(pattern, seq_len, second),
        "induction": offset_diagonal_score(pattern, seq_len - 1, second),
    }


def ngram_masks(
    tokens: Int[torch.Tensor, "pos"], orders: tuple[int, ...], offset: int
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For each order n: (target mask [pos, pos], scored-query mask [pos]) for one sequence."""
    n_pos = tokens.shape[0]
    dup = duplicate_positions(tokens, offset)
    targets = {n: ngram_targets(tokens, n, offset) for n in sorted(set(orders) | {2})}
    out = {}
    for n in orders:
        tmask = torch.zeros(n_pos, n_pos)
        qmask = torch.zeros(n_pos, dtype=torch.bool)
        for t in range(n_pos):
            tg = targets[n][t]
            if not tg:
                continue
            decoys = dup[t] - tg
            for k in range(2, n):
                decoys |= targets[k][t] - tg
            if decoys:
                tmask[t, list(tg)] = 1.0
                qmask[t] = True
        out[n] = (tmask, qmask)
    return out


def ngram_scores(
    pattern: Float[torch.Tensor, "batch head pos pos"], masks: list[dict[int, tuple[torch.Tensor, torch.Tensor]]]
) -> dict[int, Float[torch.Tensor, "batch head"]]:
    """Attention mass on order-n targets, averaged over scored queries; NaN if a prompt has none."""
    out = {}
    for n in masks[0]:
        rows = []
        for b, m in enumerate(masks):
            tmask, qmask = m[n]
            mass = (pattern[b] * tmask).sum(-1)  # [head, pos]
            rows.append(mass[:, qmask].mean(-1) if qmask.any() else torch.full((pattern.shape[1],), float("nan")))
        out[n] = torch.stack(rows)
    return out
