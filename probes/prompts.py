"""Prompt builders for head probes: repeated random tokens and n-gram-match sequences.

- `repeated_random_tokens`: [BOS] R R with R a random sequence of distinct ordinary
  tokens (Olsson et al. 2022). Distinct tokens inside R make every target position
  unambiguous: in the second copy, the only earlier occurrence of a token is its
  first copy.
- `ngram_sequences`: random sequences over a small per-prompt alphabet (Akyürek et
  al. 2024's in-context languages are similar), so that (n-1)-gram repeats are
  common and the n-gram match usually points somewhere other than the plain
  1-token (duplicate / induction) match. `probes.induction` scores only positions
  where the two differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Int

from probes.errors import IclensError


@dataclass(frozen=True)
class TokenPool:
    """Ordinary token ids to sample from (no special, unused or control tokens) and the BOS id."""

    ids: np.ndarray
    bos: int | None


def token_pool(tokenizer, d_vocab: int, max_id: int = 30000) -> TokenPool:
    """Ids below `max_id` that decode to ordinary tokens (not `<...>` specials), for random prompts."""
    hi = min(d_vocab, len(tokenizer), max_id)
    special = set(tokenizer.all_special_ids or [])
    toks = tokenizer.convert_ids_to_tokens(list(range(hi)))
    ids = [
        i for i, t in enumerate(toks)
        if i not in special and t is not None and not (t.startswith("<") and t.endswith(">"))
        and not (t.startswith("[") and t.endswith("]"))
    ]
    if len(ids) < 8:
        raise IclensError("the tokenizer has fewer than 8 ordinary tokens: use a model with a real vocabulary.")
    return TokenPool(np.asarray(ids, dtype=np.int64), tokenizer.bos_token_id)


def _with_bos(rows: np.ndarray, bos: int | None) -> torch.Tensor:
    t = torch.as_tensor(rows, dtype=torch.long)
    if bos is None:
        return t
    return torch.cat([torch.full((t.shape[0], 1), bos, dtype=torch.long), t], dim=1)


def repeated_random_tokens(pool: TokenPool, *, n_prompts: int, seq_len: int, seed: int) -> Int[torch.Tensor, "batch pos"]:
    """[n_prompts, (1 if BOS) + 2*seq_len] tokens: BOS, then R, then R again.

    R holds `seq_len` distinct tokens (sampled without replacement when the pool
    allows, so each second-copy token has exactly one earlier occurrence).
    """
    if n_prompts < 1:
        raise IclensError("n_prompts must be at least 1.")
    if seq_len < 2:
        raise IclensError("seq_len must be at least 2.")
    if seq_len > len(pool.ids):
        raise IclensError(f"seq_len {seq_len} exceeds the {len(pool.ids)} ordinary tokens of this vocabulary: use a shorter seq_len.")
    rng = np.random.default_rng(seed)
    first = np.stack([rng.choice(pool.ids, size=seq_len, replace=False) for _ in range(n_prompts)])
    return _with_bos(np.concatenate([first, first], axis=1), pool.bos)


def ngram_sequences(pool: TokenPool, *, n_prompts: int, length: int, alphabet: int, seed: int) -> Int[torch.Tensor, "batch pos"]:
    """[n_prompts, (1 if BOS) + length] tokens, i.i.d. uniform over a random `alphabet`-token subset per prompt."""
    if alphabet < 2 or alphabet > len(pool.ids):
        raise IclensError(f"n-gram alphabet must be between 2 and {len(pool.ids)}.")
    rng = np.random.default_rng(seed + 7919)  # a different stream from the repeated prompts
    rows = []
    for _ in range(n_prompts):
        sub = rng.choice(pool.ids, size=alphabet, replace=False)
        rows.append(sub[rng.integers(0, alphabet, size=length)])
    return _with_bos(np.stack(rows), pool.bos)


def ngram_targets(tokens: Int[torch.Tensor, "pos"], n: int, offset: int = 0) -> list[set[int]]:
    """For each query position t, the key positions j <= t that an order-n n-gram head attends to.

    j is a target when the n-1 tokens before j equal the n-1 tokens ending at t:
    tokens[j-n+1 : j] == tokens[t-n+2 : t+1]. n = 2 is the induction target (the
    token after an earlier copy of the current token). Positions before `offset`
    (e.g. a BOS) never count as part of a match.
    """
    if n < 2:
        raise IclensError(f"n-gram order must be at least 2 (got {n}).")
    seq = tokens.tolist()
    m = n - 1
    out: list[set[int]] = []
    for t in range(len(seq)):
        targets: set[int] = set()
        if t - m + 1 >= offset:
            ctx = seq[t - m + 1 : t + 1]
            for j in range(offset + m, t + 1):
                if seq[j - m : j] == ctx:
                    targets.add(j)
        out.append(targets)
    return out


def duplicate_positions(tokens: Int[torch.Tensor, "pos"], offset: int = 0) -> list[set[int]]:
    """For each position t, the earlier positions j < t holding the same token (the 1-token match)."""
    seq = tokens.tolist()
    return [{j for j in range(offset, t) if seq[j] == seq[t]} for t in range(len(seq))]
