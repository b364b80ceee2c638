"""Synthetic part-of-speech task for in-context vs in-weights strategies (Anand et al. 2024,
"Dual Process Learning: Controlling Use of In-Context vs. In-Weights Strategies with Weight
Forgetting"; after Chen et al. 2023's active forgetting).

Vocabulary: `n_words` training words, half nouns and half adjectives, each role with Zipf
frequencies over its words (rank r has weight (r + 1)^-alpha); a fraction `p_ambiguous` of the
words of each role, at evenly spaced frequency ranks (`ambiguous_ranks`), are ambiguous and may
fill either role; `n_heldout` extra words never appear in training; one copula token COP. A
fraction `p_absent` of training sequences (default 0) ask about a word that is not in the context,
so only the weights can answer them: they make knowing the words worth something even once the
in-context strategy is perfect.

A sequence has 7 tokens: n_b nouns (n_b uniform in 1..4), COP, 5 - n_b adjectives, then a query
token copied from one of the five context words. The target (2 classes: 0 noun, 1 adjective) is
the role the query plays in this sentence: the side of the copula where it occurred. It can be
solved in-weights (remember each word's role; fails for ambiguous words) or in-context (find the
query's earlier occurrence and read its side of the copula; works for any word, even unseen).

Eval sets (`eval_batch`): "in_dist" (the training distribution), "tail" (rare unambiguous words
in their own roles), "switched" (frequent unambiguous words in the opposite role: in-weights
answers are wrong), "switched_tail" (rare words in the opposite role), "heldout" (words never
seen in training; `fresh_embeddings` re-draws their embedding rows, at the initialisation scale or from
the statistics of the trained words, so only structure can help), "ambiguous" (a trained ambiguous word as the
query, among unambiguous words: in-context use on words the model knows, the paper's *conditional* ICL, against
the *structural* ICL of the held-out words; only when the vocabulary has ambiguous words).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

from probes.errors import IclensError
from toy_models.tasks.base import Batch
from toy_models.tasks.classification import zipf_probs
from toy_models.tasks.registry import register_task

POS_EVAL_KINDS = ("in_dist", "tail", "switched", "switched_tail", "heldout", "ambiguous")
N_CONTEXT = 5
SEQ_LEN = N_CONTEXT + 2
# Accuracy without knowing where the query occurred: the majority role given the copula's position (n_b nouns,
# 5 - n_b adjectives, n_b uniform in 1..4) is right 4/5, 3/5, 3/5, 4/5 of the time. The floor of the held-out set, whose
# fresh words carry no identity: only matching the query to its occurrence goes above it.
POSITION_PRIOR_ACCURACY = sum(max(k, N_CONTEXT - k) for k in range(1, N_CONTEXT)) / (N_CONTEXT * (N_CONTEXT - 1))


@dataclass(kw_only=True)
class POSConfig:
    """Vocabulary of 1000 words (+ 100 held out + COP), Zipf alpha 1, 5 % ambiguous, tail = last half of ranks
    (the forgetting experiment's preset is `toy_models.forgetting.POSRunConfig`)."""

    n_words: int = 1000
    n_heldout: int = 100
    zipf_alpha: float = 1.0
    p_ambiguous: float = 0.05
    p_absent: float = 0.0
    tail_from: float = 0.5

    def __post_init__(self) -> None:
        if self.n_words < 2 * N_CONTEXT or self.n_words % 2:
            raise IclensError(f"n_words must be even and >= {2 * N_CONTEXT} (got {self.n_words}).")
        if self.n_heldout < N_CONTEXT:
            raise IclensError(f"n_heldout must be >= {N_CONTEXT} (got {self.n_heldout}).")
        if self.zipf_alpha < 0 or not 0 <= self.p_ambiguous < 1 or not 0 < self.tail_from < 1:
            raise IclensError("zipf_alpha >= 0, 0 <= p_ambiguous < 1 and 0 < tail_from < 1 are required.")
        if not 0 <= self.p_absent < 1:
            raise IclensError(f"p_absent must lie in [0, 1) (got {self.p_absent}).")
        if int((1 - self.tail_from) * self.n_words / 2) < N_CONTEXT:
            raise IclensError("the tail holds fewer than 5 words per role: lower tail_from or add words.")

    @property
    def copula(self) -> int:
        return self.n_words + self.n_heldout

    @property
    def d_vocab(self) -> int:
        return self.n_words + self.n_heldout + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gumbel_keys(logp: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """logp plus i.i.d. Gumbel noise: the arg-max (top-k) of each row is a draw (k draws without replacement)
    from softmax(logp)."""
    u = torch.rand(logp.shape, generator=g).clamp_min(1e-12)
    return logp - torch.log(-torch.log(u))


def ambiguous_ranks(half: int, p_ambiguous: float) -> torch.Tensor:
    """The frequency ranks of a role's ambiguous words: the middle rank of each of n equal blocks of ranks
    (n = p_ambiguous * half), so ambiguity is spread evenly over frequencies. Fixed ranks, not a random draw: under a
    skewed Zipf law a random draw decides how much of the text is ambiguous (at alpha 1.5 and 5 %, from 0.5 % to 9 %
    of word slots over seeds 0-5), and with it which strategy wins."""
    n = int(round(p_ambiguous * half))
    return ((torch.arange(n) + 0.5) * half / max(n, 1)).long()


@register_task("pos")
class POSTask:
    """The synthetic part-of-speech task; `sample` for training, `eval_batch` for the eval sets.

    A batch holds `tokens` [batch pos] (ids), `target` [batch] (0 noun, 1 adjective) and
    `n_before` [batch] (nouns before the copula).
    """

    def __init__(self, config: POSConfig | None = None, **kwargs: Any):
        self.cfg = c = config if config is not None else POSConfig(**kwargs)
        half = c.n_words // 2
        self.role = torch.cat([torch.zeros(half, dtype=torch.long), torch.ones(half, dtype=torch.long)])
        self.rank = torch.cat([torch.arange(half), torch.arange(half)])  # rank within its role (0 = most frequent)
        self.ambiguous = torch.zeros(c.n_words, dtype=torch.bool)
        for r in (0, 1):
            self.ambiguous[ambiguous_ranks(half, c.p_ambiguous) + r * half] = True
        w = zipf_probs(half, c.zipf_alpha).repeat(2)
        self.weight = w
        self.tail = self.rank >= int(c.tail_from * half)
        # log-weights of each pool over the training words (-inf where a word cannot fill the role)
        self.pool_logp = torch.stack([torch.where((self.role == r) | self.ambiguous, w.log(), -torch.inf)
                                      for r in (0, 1)])

    def _role_pools(self, words: torch.Tensor, *, base: torch.Tensor | None = None, swap: bool = False,
                    ) -> Float[torch.Tensor, "role word"]:
        """Log-weights of the noun and adjective pools over the words `words` (a mask) in their own roles (the opposite
        ones with `swap`); base: the log-weights (default: the training frequencies); -inf elsewhere."""
        base = self.weight.log() if base is None else base
        return torch.stack([torch.where(words & (self.role == (1 - r if swap else r)), base, -torch.inf)
                            for r in (0, 1)])

    @property
    def eval_kinds(self) -> tuple[str, ...]:
        """The eval sets this vocabulary can build: POS_EVAL_KINDS, without "ambiguous" when it has no ambiguous
        words."""
        return tuple(k for k in POS_EVAL_KINDS if k != "ambiguous" or bool(self.ambiguous.any()))

    def _draw_roles(self, n: int, g: torch.Generator, logp: Float[torch.Tensor, "role word"],
                    ) -> tuple[Int[torch.Tensor, "batch item"], Int[torch.Tensor, " batch"]]:
        """Five distinct words per row, noun slots from logp[0], adjective slots from logp[1] (Gumbel top-k)."""
        n_before = torch.randint(1, N_CONTEXT, (n,), generator=g)
        keys = _gumbel_keys(logp[:, None, :].expand(2, n, -1), g)  # [role batch word]
        nouns = keys[0].topk(N_CONTEXT, -1).indices
        taken = torch.zeros(n, logp.shape[1], dtype=torch.bool).scatter_(1, nouns, True)
        adjs = keys[1].masked_fill(taken, -torch.inf).topk(N_CONTEXT, -1).indices  # distinct from the nouns
        slot = torch.arange(N_CONTEXT)
        before = slot[None, :] < n_before[:, None]
        # nouns fill the first n_before slots, adjectives the rest (shifted to start at their index 0)
        adj_idx = (slot[None, :] - n_before[:, None]).clamp_min(0)
        words = torch.where(before, nouns, adjs.gather(1, adj_idx))
        return words, n_before

    def _assemble(self, words: Int[torch.Tensor, "batch item"], n_before: Int[torch.Tensor, " batch"],
                  g: torch.Generator, q: Int[torch.Tensor, "batch 1"] | None = None) -> Batch:
        """Token rows from context words; the query repeats slot q (drawn uniformly when not given)."""
        n = words.shape[0]
        slot = torch.arange(N_CONTEXT)
        tokens = torch.full((n, SEQ_LEN), self.cfg.copula, dtype=torch.long)
        # context word j sits at position j (before the copula) or j + 1 (after it)
        pos = slot[None, :] + (slot[None, :] >= n_before[:, None]).long()
        tokens.scatter_(1, pos, words)
        if q is None:
            q = torch.randint(0, N_CONTEXT, (n, 1), generator=g)
        tokens[:, -1] = words.gather(1, q)[:, 0]
        target = (q[:, 0] >= n_before).long()
        return {"tokens": tokens, "target": target, "n_before": n_before}

    def sample(self, batch_size: int, generator: torch.Generator, *, step: int = 0) -> Batch:
        words, nb = self._draw_roles(batch_size, generator, self.pool_logp)
        batch = self._assemble(words, nb, generator)
        if self.cfg.p_absent > 0:
            self._absent_queries(batch, words, generator)
        return batch

    def _absent_queries(self, batch: Batch, words: Int[torch.Tensor, "batch item"], g: torch.Generator) -> None:
        """In place: a fraction p_absent of rows get a query word that is not in their context, drawn by frequency
        from a random role's pool; the target is that role, so only the weights can answer these rows."""
        n = words.shape[0]
        rows = torch.rand(n, generator=g) < self.cfg.p_absent
        role = torch.randint(0, 2, (n,), generator=g)
        keys = _gumbel_keys(self.pool_logp[role], g)
        keys.scatter_(1, words, -torch.inf)  # never a word of the context
        query = keys.argmax(-1)
        batch["tokens"][rows, -1] = query[rows]
        batch["target"] = torch.where(rows, role, batch["target"])

    def eval_batch(self, kind: str, n: int, *, seed: int = 4321) -> Batch:
        """A fixed eval set (see the module docstring for the kinds)."""
        if kind not in POS_EVAL_KINDS:
            raise IclensError(f"unknown eval set {kind!r}: use one of {', '.join(POS_EVAL_KINDS)}.")
        c, g = self.cfg, torch.Generator().manual_seed(seed)
        if kind == "in_dist":
            return self.sample(n, g)
        if kind == "heldout":
            V = c.n_words + c.n_heldout
            logp = torch.full((2, V), -torch.inf)
            logp[:, c.n_words:] = 0.0  # uniform over the held-out words, either role
            words, nb = self._draw_roles(n, g, logp)
            return self._assemble(words, nb, g)
        if kind == "ambiguous":
            return self._ambiguous_query_batch(n, g)
        clean = ~self.ambiguous & (self.tail if kind in ("tail", "switched_tail") else torch.ones_like(self.tail))
        uniform = kind in ("tail", "switched_tail")
        logp = self._role_pools(clean, base=torch.zeros_like(self.weight) if uniform else None,
                                swap=kind.startswith("switched"))
        words, nb = self._draw_roles(n, g, logp)
        return self._assemble(words, nb, g)

    def _ambiguous_query_batch(self, n: int, g: torch.Generator) -> Batch:
        """Unambiguous context words in their own roles (by frequency); the query slot's word, drawn uniformly, becomes
        an ambiguous word drawn by frequency, so only the context tells its role in this sentence."""
        amb = self.ambiguous.nonzero()[:, 0]
        if not len(amb):
            raise IclensError("the ambiguous eval set needs ambiguous words: p_ambiguous gives none here.")
        words, n_before = self._draw_roles(n, g, self._role_pools(~self.ambiguous))
        q = torch.randint(0, N_CONTEXT, (n,), generator=g)
        words[torch.arange(n), q] = amb[torch.multinomial(self.weight[amb], n, replacement=True, generator=g)]
        return self._assemble(words, n_before, g, q[:, None])

    def opposite_role_batch(self, query_words: torch.Tensor, n: int, *, seed: int = 777) -> Batch:
        """n sequences whose query is one of `query_words` (unambiguous training words, drawn uniformly) in the role
        opposite to its training role, so context and weights disagree; the four other context words are drawn by
        frequency from the remaining unambiguous words, in their own roles."""
        qw = torch.as_tensor(query_words, dtype=torch.long)
        if qw.numel() == 0 or (qw >= self.cfg.n_words).any() or self.ambiguous[qw].any():
            raise IclensError("opposite_role_batch needs unambiguous training words as queries.")
        cands = [qw[self.role[qw] == 1 - side] for side in (0, 1)]  # words that fit a noun / adjective slot
        g = torch.Generator().manual_seed(seed)
        others = ~self.ambiguous
        others[qw] = False
        logp = self._role_pools(others)
        if int(torch.isfinite(logp).sum(1).min()) < N_CONTEXT:
            raise IclensError("too few other words to fill a context: use a larger vocabulary.")
        words, n_before = self._draw_roles(n, g, logp)
        q = torch.randint(0, N_CONTEXT, (n,), generator=g)
        side = (q >= n_before).long()
        for s, c in enumerate(cands):
            rows = (side == s).nonzero()[:, 0]
            if len(rows) and not len(c):
                raise IclensError("opposite_role_batch needs query words of both roles.")
            words[rows, q[rows]] = c[torch.randint(0, max(len(c), 1), (len(rows),), generator=g)]
        return self._assemble(words, n_before, g, q[:, None])

    def logits(self, model: nn.Module, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch role"]:
        return model(tokens)[:, -1, :]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(model, batch["tokens"]), batch["target"])

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()


@contextmanager
def fresh_embeddings(model: nn.Module, rows: torch.Tensor | range, *, std: float | None = None,
                     like: torch.Tensor | range | None = None, seed: int = 0) -> Iterator[None]:
    """Temporarily replace embedding rows `rows` of `model.embed.W_E` by fresh draws (restored on exit).

    std: i.i.d. N(0, std^2) draws (the initialisation). like: draws from the Gaussian (mean and covariance)
    of the embedding rows `like`, e.g. all training words of both roles: new tokens that look like words in
    scale and shape but carry no identity, so only the sentence structure can classify them. A model
    trained purely in context classifies held-out words at 0.99 with `like` but 0.73 with init-scale
    draws, whose norm is half a trained word's (see forgetting.make_pos_eval_fn, which records both).
    """
    if (std is None) == (like is None):
        raise IclensError("fresh_embeddings: pass exactly one of std (i.i.d. draws) or like (rows to imitate).")
    W = model.embed.W_E

    def index(r: torch.Tensor | range) -> torch.Tensor:
        return torch.as_tensor(list(r) if isinstance(r, range) else r, dtype=torch.long, device=W.device)

    idx = index(rows)
    saved = W.detach()[idx].clone()
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(idx), W.shape[1], generator=gen, dtype=torch.float64)
    if like is not None:
        ref = W.detach()[index(like)].double().cpu()
        cov = torch.cov(ref.T) + 1e-8 * torch.eye(ref.shape[1], dtype=torch.float64)
        new = ref.mean(0) + z @ torch.linalg.cholesky(cov).T
    else:
        new = z * std
    try:
        with torch.no_grad():
            W[idx] = new.to(W.device, W.dtype)
        yield
    finally:
        with torch.no_grad():
            W[idx] = saved


@torch.no_grad()
def pos_accuracy(task: POSTask, model: nn.Module, batch: Batch) -> float:
    dev = next(model.parameters()).device
    return role_accuracy(task.logits(model, batch["tokens"].to(dev)), batch["target"])


def role_accuracy(logits: Float[torch.Tensor, "batch role"], target: Int[torch.Tensor, " batch"]) -> float:
    """Share of rows whose arg-max role is the target."""
    return float((logits.argmax(-1).cpu() == target).float().mean())
