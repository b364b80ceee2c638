"""In-context use by frequency rank: hand-built strategies with known answers."""

import pytest
import torch
from torch import nn

from probes.errors import IclensError
from toy_models.pos_strategy import context_use_by_rank, rank_bins
from toy_models.tasks.pos import POSConfig, POSTask


class ContextReader(nn.Module):
    """Answers from the context: the side of the copula where the query word occurred."""

    def __init__(self, task: POSTask):
        super().__init__()
        self.cop, self.dummy = task.cfg.copula, nn.Parameter(torch.zeros(1))

    def forward(self, tokens):
        ctx, q = tokens[:, :-1], tokens[:, -1]
        where = (ctx == q[:, None]).float().argmax(1)
        cop = (ctx == self.cop).float().argmax(1)
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], 2)
        logits[:, -1, :] = nn.functional.one_hot((where > cop).long(), 2).float()
        return logits


class WeightReader(ContextReader):
    """Answers from the weights: the query word's training role."""

    def __init__(self, task: POSTask):
        super().__init__(task)
        self.role = task.role

    def forward(self, tokens):
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], 2)
        logits[:, -1, :] = nn.functional.one_hot(self.role[tokens[:, -1]], 2).float()
        return logits


def test_rank_bins_cover_the_ranks_in_log_steps():
    bins = rank_bins(1000, 6)
    assert bins[0][0] == 0 and bins[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in zip(bins, bins[1:]))  # contiguous
    widths = [hi - lo for lo, hi in bins]
    assert widths == sorted(widths) and widths[-1] > 50 * widths[0]  # log-spaced
    with pytest.raises(IclensError):
        rank_bins(0)


def test_opposite_role_batch_puts_the_query_against_its_role():
    task = POSTask(POSConfig(n_words=200, n_heldout=10, p_ambiguous=0.1))
    words = torch.tensor([i for i in range(200) if task.rank[i] < 3 and not task.ambiguous[i]])
    b = task.opposite_role_batch(words, 2000)
    ctx, q = b["tokens"][:, :-1], b["tokens"][:, -1]
    assert torch.isin(q, words).all()
    assert torch.all((ctx == q[:, None]).sum(1) == 1)  # the query occurs exactly once
    cop = (ctx == task.cfg.copula).float().argmax(1)
    side = ((ctx == q[:, None]).float().argmax(1) > cop).long()
    assert torch.equal(b["target"], side) and torch.all(side != task.role[q])  # against its training role
    others = ctx[(ctx != task.cfg.copula) & (ctx != q[:, None])]
    assert not task.ambiguous[others].any() and not torch.isin(others, words).any()
    with pytest.raises(IclensError, match="unambiguous"):
        task.opposite_role_batch(task.ambiguous.nonzero()[:, 0], 10)


def test_context_use_by_rank_knows_each_strategy():
    task = POSTask(POSConfig(n_words=400, n_heldout=10, zipf_alpha=1.5, p_ambiguous=0.05))
    ctx_use = context_use_by_rank(ContextReader(task), task, size=300)
    wts_use = context_use_by_rank(WeightReader(task), task, size=300)
    assert [r["context"] for r in ctx_use] == [1.0] * len(ctx_use)
    assert [r["context"] for r in wts_use] == [0.0] * len(wts_use)
    assert len(ctx_use) >= 4 and abs(sum(r["mass"] for r in ctx_use) - 1) < 1e-5
    assert ctx_use[0]["mass"] > ctx_use[-1]["mass"]  # frequent bins first
