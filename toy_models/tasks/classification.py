"""Bursty in-context classification (Reddy 2023, "The mechanistic basis of data dependence and
abrupt learning in an in-context classification task"; after Chan et al. 2022).

K classes with fixed means mu_k ~ N(0, I_D / D); class k carries label k mod L, and each of the
L labels has a fixed random vector in the same D dimensions. An item of class k is
x = (mu_k + eps * eta) / sqrt(1 + eps^2), eta ~ N(0, I_D / D). A sequence is N item-label pairs
followed by a query item (2N + 1 tokens); the target is the query's label. Every token is its
D-dim content concatenated with a one-hot position among `pos_dim` slots, shifted by a random
offset per sequence.

Knobs: burstiness B (a bursty context holds N / B classes, each B times, and the query is one
of them), the fraction p_B of bursty sequences (the rest draw all N + 1 classes i.i.d.), the Zipf
exponent alpha of class frequencies (p_k ~ (k + 1)^-alpha), the fraction p_C of sequences made of
novel classes (fresh means and random labels), and eps.

Eval sets (`eval_batch`): "icl" novel classes in a bursty context (only in-context learning
works), "flip" training classes whose labels are shifted to other labels in the context (ICL
must override the weights), "iwl" training classes with the query class absent from the context
(only in-weights learning works), and "train" (the training distribution).

Sampling is vectorised over the batch: weighted draws without replacement use their
equivalence with the first occurrences of an i.i.d. stream, per-row shuffles an argsort of uniforms (see bench/bench_icl_sampler.py for the speed-up
over the original per-sequence loop).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn

from probes.errors import IclensError
from toy_models.tasks.base import Batch
from toy_models.tasks.registry import register_task

EVAL_KINDS = ("train", "icl", "flip", "iwl")


@dataclass(kw_only=True)
class ClassificationConfig:
    """Reddy's task. Defaults: K = 512 classes, L = 32 labels, D = 63, N = 8 pairs, B = 4, eps = 0.1."""

    n_classes: int = 512
    n_labels: int = 32
    dim: int = 63
    n_items: int = 8
    burstiness: int = 4
    p_bursty: float = 1.0
    zipf_alpha: float = 0.0
    p_novel: float = 0.0
    eps: float = 0.1
    pos_dim: int = 65
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_classes < 2 or self.n_labels < 2 or self.dim < 1 or self.n_items < 1:
            raise IclensError("classification task: n_classes and n_labels must be >= 2, dim and n_items >= 1.")
        if self.burstiness < 0 or (self.burstiness > 0 and self.n_items % self.burstiness):
            raise IclensError(f"burstiness B={self.burstiness} must divide n_items N={self.n_items} (or be 0).")
        if self.burstiness > 0 and self.n_items // self.burstiness > self.n_classes:
            raise IclensError("a bursty context needs N / B distinct classes: use fewer items or more classes.")
        for name in ("p_bursty", "p_novel"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise IclensError(f"{name} must lie in [0, 1] (got {getattr(self, name)}).")
        if self.zipf_alpha < 0 or self.eps < 0:
            raise IclensError("zipf_alpha and eps must be >= 0.")
        if self.pos_dim < self.seq_len:
            raise IclensError(f"pos_dim={self.pos_dim} must be >= the sequence length 2N+1={self.seq_len}.")

    @property
    def seq_len(self) -> int:
        return 2 * self.n_items + 1

    @property
    def d_in(self) -> int:
        return self.pos_dim + self.dim

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def zipf_probs(n: int, alpha: float) -> Float[torch.Tensor, " n"]:
    """Rank-frequency distribution p_k proportional to (k + 1)^-alpha (alpha = 0: uniform)."""
    w = torch.arange(1, n + 1, dtype=torch.float64).pow(-alpha)
    return (w / w.sum()).float()


def sample_without_replacement(probs: Float[torch.Tensor, " n"], rows: int, k: int,
                               generator: torch.Generator) -> Int[torch.Tensor, "rows k"]:
    """`rows` weighted draws of k distinct indices, with the law of sequential sampling without replacement.

    Sequential sampling is the order of first occurrences in an i.i.d. stream from `probs`, so each
    row reads its first k distinct values from 4k + 8 i.i.d. draws (O(rows k log n), where a Gumbel
    top-k needs rows x n random numbers). A row whose stream holds fewer than k distinct values
    continues, by the same memoryless property, with a Gumbel top-k over the values not yet seen.
    """
    if k > int((probs > 0).sum()):
        raise IclensError(f"cannot draw {k} distinct classes from {int((probs > 0).sum())} with non-zero mass.")
    m = 4 * k + 8
    draws = torch.multinomial(probs, rows * m, replacement=True, generator=generator).view(rows, m)
    earlier = torch.ones(m, m, dtype=torch.bool).tril(-1)  # [j, i]: column i comes before column j
    dup = ((draws[:, :, None] == draws[:, None, :]) & earlier).any(-1)
    order = (dup.long() * m + torch.arange(m)).argsort(dim=1)[:, :k]  # first occurrences first, in order
    out = draws.gather(1, order)
    n_seen = (~dup).sum(1)
    short = n_seen < k
    if short.any():
        seen, have = out[short], n_seen[short]
        valid = torch.arange(k)[None, :] < have[:, None]
        e = torch.empty(len(seen), probs.shape[0]).exponential_(generator=generator)
        keys = (probs / e).scatter(1, torch.where(valid, seen, seen[:, :1]), -1.0)  # seen values excluded
        rest = keys.topk(k, dim=-1).indices
        fill = rest.gather(1, (torch.arange(k)[None, :] - have[:, None]).clamp_min(0))
        out[short] = torch.where(valid, seen, fill)
    return out


@register_task("icl-classification")
class ClassificationTask:
    """Reddy's bursty classification task; `sample` gives training batches, `eval_batch` the eval sets.

    A batch holds `tokens` [batch pos d_in], `target` [batch] (label id), `labels` [batch item]
    (the context labels), `match` [batch item] (context item of the query's class) and `slots`
    [batch item+1] (which context class each item and the query belong to).
    """

    def __init__(self, config: ClassificationConfig | None = None, **kwargs: Any):
        self.cfg = config if config is not None else ClassificationConfig(**kwargs)
        c = self.cfg
        gen = torch.Generator().manual_seed(c.seed)
        self.means = torch.randn(c.n_classes, c.dim, generator=gen) / math.sqrt(c.dim)
        self.label_vecs = torch.randn(c.n_labels, c.dim, generator=gen) / math.sqrt(c.dim)
        self.probs = zipf_probs(c.n_classes, c.zipf_alpha)
        self.logp = self.probs.log()

    # -- the vectorised core ------------------------------------------------------------------
    def draw(self, n: int, generator: torch.Generator, *, p_bursty: float, p_novel: float, flip: bool = False,
             query_absent: bool = False) -> Batch:
        """n sequences; each row bursty with prob p_bursty, made of novel classes with prob p_novel.

        flip: context labels shifted by a random r in [1, L-1] (mod L) per row, target follows the context.
        query_absent: non-bursty rows whose context never contains the query's class.
        """
        c, g = self.cfg, generator
        N, L, B = c.n_items, c.n_labels, c.burstiness
        S = N + 1  # slots: a non-bursty row uses one per item and one for the query
        bursty = (torch.rand(n, generator=g) < p_bursty) & torch.tensor(B > 0)
        novel = torch.rand(n, generator=g) < p_novel
        # which slot every context item and the query use
        n_cls = N // B if B > 0 else 1
        base = torch.arange(N) // max(B, 1)
        perm = torch.rand(n, N, generator=g).argsort(dim=1)
        q_slot = torch.randint(0, n_cls, (n, 1), generator=g)
        slots = torch.where(bursty[:, None], torch.cat([base[perm], q_slot], 1), torch.arange(S).expand(n, S))
        # classes of the slots: distinct Zipf draws for bursty rows, i.i.d. Zipf draws otherwise
        iid = torch.multinomial(self.probs, n * S, replacement=True, generator=g).view(n, S)
        if query_absent:  # redraw context classes equal to the query's (rejection, vectorised)
            for _ in range(1000):
                clash = iid[:, :N] == iid[:, N:]
                if not clash.any():
                    break
                iid[:, :N][clash] = torch.multinomial(self.probs, int(clash.sum()), replacement=True, generator=g)
            else:
                raise IclensError("could not draw contexts without the query class: use more classes.")
        distinct = sample_without_replacement(self.probs, n, n_cls, g)
        slot_cls = torch.where(bursty[:, None], torch.cat([distinct, iid[:, n_cls:]], 1), iid)
        # slot means and labels: training classes, or fresh ones for novel rows
        fresh = torch.randn(n, S, c.dim, generator=g) / math.sqrt(c.dim)
        slot_mean = torch.where(novel[:, None, None], fresh, self.means[slot_cls])
        slot_lab = torch.where(novel[:, None], torch.randint(0, L, (n, S), generator=g), slot_cls % L)
        if flip:
            slot_lab = (slot_lab + torch.randint(1, L, (n, 1), generator=g)) % L
        key = torch.where(novel[:, None], slot_cls.new_tensor(c.n_classes) + torch.arange(S), slot_cls)
        item_key = key.gather(1, slots)
        items = slot_mean.gather(1, slots[..., None].expand(-1, -1, c.dim))
        eta = torch.randn(n, S, c.dim, generator=g) / math.sqrt(c.dim)
        items = (items + c.eps * eta) / math.sqrt(1 + c.eps ** 2)
        labels = slot_lab.gather(1, slots)
        content = torch.empty(n, c.seq_len, c.dim)
        content[:, 0:2 * N:2] = items[:, :N]
        content[:, 1:2 * N:2] = self.label_vecs[labels[:, :N]]
        content[:, 2 * N] = items[:, N]
        offset = torch.randint(0, c.pos_dim - c.seq_len + 1, (n, 1), generator=g)
        pos = F.one_hot(offset + torch.arange(c.seq_len), c.pos_dim).float()
        return {"tokens": torch.cat([pos, content], -1), "target": labels[:, N], "labels": labels[:, :N],
                "match": item_key[:, :N] == item_key[:, N:], "slots": slots, "classes": slot_cls.gather(1, slots),
                "novel": novel, "bursty": bursty}

    # -- the Task protocol ----------------------------------------------------------------------
    def sample(self, batch_size: int, generator: torch.Generator, *, step: int = 0) -> Batch:
        return self.draw(batch_size, generator, p_bursty=self.cfg.p_bursty, p_novel=self.cfg.p_novel)

    def eval_batch(self, kind: str, n: int, *, seed: int = 1234) -> Batch:
        """A fixed eval set: "icl" (novel classes), "flip" (shifted labels), "iwl" (query class absent), "train"."""
        if kind not in EVAL_KINDS:
            raise IclensError(f"unknown eval set {kind!r}: use one of {', '.join(EVAL_KINDS)}.")
        if kind != "iwl" and self.cfg.burstiness == 0:
            raise IclensError(f"eval set {kind!r} needs a bursty context: use burstiness B >= 1.")
        g = torch.Generator().manual_seed(seed)
        if kind == "train":
            return self.sample(n, g)
        if kind == "icl":
            return self.draw(n, g, p_bursty=1.0, p_novel=1.0)
        if kind == "flip":
            return self.draw(n, g, p_bursty=1.0, p_novel=0.0, flip=True)
        return self.draw(n, g, p_bursty=0.0, p_novel=0.0, query_absent=True)

    def logits(self, model: nn.Module, tokens: Float[torch.Tensor, "batch pos d_in"]) -> Float[torch.Tensor, "batch label"]:
        """Label logits read from the final (query) token."""
        return model(tokens)[:, -1, :]

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(self.logits(model, batch["tokens"]), batch["target"])

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()


@torch.no_grad()
def accuracy(task: ClassificationTask, model: nn.Module, batch: Batch, *, chunk: int = 1024) -> float:
    """Fraction of queries whose arg-max label is the target."""
    dev = next(model.parameters()).device
    hits = 0
    for i in range(0, batch["target"].shape[0], chunk):
        logits = task.logits(model, batch["tokens"][i:i + chunk].to(dev))
        hits += int((logits.argmax(-1).cpu() == batch["target"][i:i + chunk]).sum())
    return hits / batch["target"].shape[0]
