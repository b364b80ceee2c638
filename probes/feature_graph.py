"""The token-feature bipartite graph of Zhang, Lin & Li (2025).

Nodes are the corpus's token types on one side and SAE latents on the other. An edge
(token t, feature f) exists when f fires on an occurrence of t in any context of the
corpus: activation > ``threshold`` (explicit; 0 = any positive activation). A token's
*degree* is the number of distinct features it activates.

Statistics (`graph_stats`):

- degree vs frequency rank (tokens sorted by corpus count), with a power-law fit
  ``degree ~ C * rank^(-alpha)`` by least squares in log-log over tokens of degree > 0;
- the cumulative fraction of *alive* features (features with at least one edge)
  activated by the k most frequent tokens, k = 1, 5, 10, 20, 50: over all tokens, over
  function tokens only and over content tokens only;
- function vs content: number of token types, share of occurrences, mean degree, and
  the fraction of alive features each group activates in total.

The paper's headline is that a handful of (function) tokens activate most features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Bool, Int

KS = (1, 5, 10, 20, 50)


@dataclass
class TokenFeatureGraph:
    """Edges between token types and features, rows sorted by token frequency (most frequent first)."""

    token_ids: Int[torch.Tensor, " tokens"]
    counts: Int[torch.Tensor, " tokens"]
    edges: Bool[torch.Tensor, "tokens d_sae"]
    threshold: float
    tracked: list[int] = field(default_factory=list)
    tracked_counts: torch.Tensor | None = None  # [tokens, len(tracked)]: occurrences where each tracked feature fired

    @property
    def degree(self) -> Int[torch.Tensor, " tokens"]:
        return self.edges.sum(1)

    @property
    def alive(self) -> Bool[torch.Tensor, " d_sae"]:
        return self.edges.any(0)

    def features_of(self, token_id: int) -> list[int]:
        """The features linked to one token id (empty if the token never occurs)."""
        rows = (self.token_ids == token_id).nonzero()
        return [] if len(rows) == 0 else self.edges[int(rows[0, 0])].nonzero().flatten().tolist()

    def tokens_of(self, feature: int) -> list[int]:
        """The token ids linked to one feature."""
        return self.token_ids[self.edges[:, feature]].tolist()

    def most_specific_tokens(self, feature: int, n: int = 8, min_count: int = 3) -> list[tuple[int, float]]:
        """(token id, firing rate) of the tokens on which a *tracked* feature fires most often, per occurrence."""
        if self.tracked_counts is None or feature not in self.tracked:
            raise ValueError(f"feature {feature} was not tracked: pass it in build_graph(track=...).")
        rate = self.tracked_counts[:, self.tracked.index(feature)].double() / self.counts.clamp_min(1)
        rate[self.counts < min_count] = -1
        top = rate.topk(min(n, len(rate))).indices
        return [(int(self.token_ids[r]), float(rate[r])) for r in top if rate[r] > 0]


def build_graph(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                vocab_size: int, threshold: float = 0.0, track: Sequence[int] = ()) -> TokenFeatureGraph:
    """Accumulate the graph from (token ids [n], feature activations [n, d_sae]) batches (n varies).

    `track`: features whose firings are also counted per token (not just linked), for firing
    rates. Memory: one bool row per distinct token (grown by doubling), never per occurrence.
    """
    track = [int(t) for t in track]
    tracked = torch.zeros(0, len(track), dtype=torch.long)
    row_of = torch.full((vocab_size,), -1, dtype=torch.long)
    ids: list[int] = []
    edges = torch.zeros(0, 0, dtype=torch.bool)
    counts = torch.zeros(0, dtype=torch.long)
    for toks, acts in batches:
        toks = toks.long().cpu()
        if len(edges) == 0 and edges.shape[1] != acts.shape[1]:
            edges = torch.zeros(64, acts.shape[1], dtype=torch.bool)
            counts = torch.zeros(64, dtype=torch.long)
        new = torch.unique(toks[row_of[toks] < 0])
        if len(new):
            row_of[new] = torch.arange(len(ids), len(ids) + len(new))
            ids.extend(new.tolist())
            if len(ids) > len(edges):
                cap = max(len(ids), 2 * len(edges))
                edges = torch.cat([edges, torch.zeros(cap - len(edges), edges.shape[1], dtype=torch.bool)])
                counts = torch.cat([counts, torch.zeros(cap - len(counts), dtype=torch.long)])
        if len(tracked) < len(counts):
            tracked = torch.cat([tracked, torch.zeros(len(counts) - len(tracked), len(track), dtype=torch.long)])
        rows = row_of[toks]
        counts += torch.bincount(rows, minlength=len(counts))
        fired = acts.detach().cpu() > threshold
        i, f = fired.nonzero(as_tuple=True)
        edges[rows[i], f] = True
        if track:
            tracked.index_add_(0, rows, fired[:, track].long())
    n = len(ids)
    counts, edges, tracked = counts[:n], edges[:n], tracked[:n]
    # Most frequent first; ties broken by token id so the order is deterministic.
    ids_t = torch.tensor(ids, dtype=torch.long)
    order = sorted(range(n), key=lambda r: (-int(counts[r]), ids[r]))
    order_t = torch.tensor(order, dtype=torch.long)
    return TokenFeatureGraph(token_ids=ids_t[order_t], counts=counts[order_t], edges=edges[order_t], threshold=threshold,
                             tracked=track, tracked_counts=tracked[order_t] if track else None)


def power_law_fit(rank: Sequence[int | float] | np.ndarray, degree: Sequence[int | float] | np.ndarray) -> dict[str, float | int]:
    """Least-squares fit of log10(degree) = log10(C) - alpha * log10(rank) over degree > 0."""
    r = np.asarray(rank, dtype=float)
    d = np.asarray(degree, dtype=float)
    keep = d > 0
    if keep.sum() < 2:
        return {"alpha": float("nan"), "log10_C": float("nan"), "r2": float("nan"), "n": int(keep.sum())}
    x, y = np.log10(r[keep]), np.log10(d[keep])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss = ((y - y.mean()) ** 2).sum()
    return {"alpha": float(-slope), "log10_C": float(intercept), "r2": float(1 - (resid ** 2).sum() / ss) if ss > 0 else 1.0,
            "n": int(keep.sum())}


def coverage(edges: Bool[torch.Tensor, "tokens d_sae"], alive: Bool[torch.Tensor, " d_sae"],
             ks: Sequence[int] = KS) -> dict[int, float]:
    """Fraction of alive features activated by the union of the first k rows, for each k."""
    n_alive = int(alive.sum())
    out = {}
    for k in ks:
        hit = edges[:k].any(0) & alive if len(edges) else alive & False
        out[int(k)] = int(hit.sum()) / n_alive if n_alive else 0.0
    return out


@dataclass
class GraphStats:
    """What result.json holds about the graph (per-token arrays in frequency-rank order)."""

    threshold: float
    n_occurrences: int
    n_token_types: int
    n_features: int
    n_alive: int
    power_law: dict[str, float | int]
    coverage: dict[str, dict[int, float]]
    function_vs_content: dict[str, dict[str, float | int]]
    token_ids: list[int] = field(default_factory=list)
    frequency: list[int] = field(default_factory=list)
    degree: list[int] = field(default_factory=list)
    is_function: list[bool] = field(default_factory=list)


def graph_stats(graph: TokenFeatureGraph, function_mask: Bool[torch.Tensor, " vocab"],
                ks: Sequence[int] = KS) -> GraphStats:
    """Degree/rank power law, top-k coverage (all / function / content), function vs content split."""
    degree = graph.degree
    alive = graph.alive
    is_fn = function_mask[graph.token_ids]
    rank = np.arange(1, len(degree) + 1)
    cov = {"all": coverage(graph.edges, alive, ks), "function": coverage(graph.edges[is_fn], alive, ks),
           "content": coverage(graph.edges[~is_fn], alive, ks)}
    n_alive = int(alive.sum())
    total = int(graph.counts.sum())
    split = {}
    for name, mask in (("function", is_fn), ("content", ~is_fn)):
        split[name] = {
            "n_types": int(mask.sum()),
            "occurrence_share": float(graph.counts[mask].sum()) / total if total else 0.0,
            "mean_degree": float(degree[mask].float().mean()) if mask.any() else 0.0,
            "alive_fraction_covered": float((graph.edges[mask].any(0) & alive).sum()) / n_alive if n_alive and mask.any() else 0.0,
        }
    return GraphStats(
        threshold=graph.threshold, n_occurrences=total, n_token_types=len(degree), n_features=graph.edges.shape[1],
        n_alive=n_alive, power_law=power_law_fit(rank, degree.tolist()), coverage=cov, function_vs_content=split,
        token_ids=graph.token_ids.tolist(), frequency=graph.counts.tolist(), degree=degree.tolist(), is_function=is_fn.tolist(),
    )


def sae_batches(store, sae, *, max_sequences: int | None = None):
    """(token ids, SAE feature activations) for every cached position after BOS, shard by shard."""
    with torch.no_grad():
        for x, toks in store.iter_tokens(max_sequences=max_sequences):
            for i in range(0, len(x), 4096):
                yield toks[i:i + 4096], sae.encode(x[i:i + 4096])
