"""In-context use by frequency rank: hand-built strategies with known answers."""

import pytest
import torch
from torch import nn

from probes.errors import IclensError
from toy_models.forgetting import forgetting_summary, structural_share
from toy_models.models import ToyConfig, ToyTransformer
from toy_models.pos_strategy import QUERY_ATTENTION_SETS, context_use_by_rank, query_attention, rank_bins
from toy_models.tasks.pos import POSITION_PRIOR_ACCURACY, POSConfig, POSTask, pos_accuracy


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


def test_ambiguous_eval_set_needs_the_context():
    task = POSTask(POSConfig(n_words=200, n_heldout=10, zipf_alpha=1.0, p_ambiguous=0.1))
    b = task.eval_batch("ambiguous", 4000)
    ctx, q = b["tokens"][:, :-1], b["tokens"][:, -1]
    assert task.ambiguous[q].all() and torch.all((ctx == q[:, None]).sum(1) == 1)  # an ambiguous query, once
    cop = (ctx == task.cfg.copula).float().argmax(1)
    assert torch.equal(b["target"], ((ctx == q[:, None]).float().argmax(1) > cop).long())
    others = ctx[(ctx != task.cfg.copula) & (ctx != q[:, None])].view(4000, 4)
    assert not task.ambiguous[others].any()
    assert abs(b["target"].float().mean().item() - 0.5) < 0.03  # either role, as in training
    freq = torch.bincount(task.rank[q], minlength=100).float()
    assert freq[5] > 3 * freq[95]  # ambiguous words drawn by frequency (ranks 5, 15, ..., 95)
    assert pos_accuracy(task, ContextReader(task), b) == 1.0
    assert abs(pos_accuracy(task, WeightReader(task), b) - 0.5) < 0.03  # a word's home role is right half the time
    with pytest.raises(IclensError, match="ambiguous words"):
        POSTask(POSConfig(n_words=40, n_heldout=10, p_ambiguous=0.0)).eval_batch("ambiguous", 4)


class PositionPrior(ContextReader):
    """Ignores the words: the majority role given the copula's position."""

    def forward(self, tokens):
        cop = (tokens[:, :-1] == self.cop).float().argmax(1)
        logits = torch.zeros(tokens.shape[0], tokens.shape[1], 2)
        logits[:, -1, :] = nn.functional.one_hot((cop <= 2).long(), 2).float()  # 1-2 nouns: mostly adjectives
        return logits


def test_held_out_floor_is_the_position_prior():
    task = POSTask(POSConfig(n_words=40, n_heldout=10))
    held = task.eval_batch("heldout", 20000)
    assert POSITION_PRIOR_ACCURACY == pytest.approx(0.7)
    assert pos_accuracy(task, PositionPrior(task), held) == pytest.approx(POSITION_PRIOR_ACCURACY, abs=0.01)
    assert pos_accuracy(task, ContextReader(task), held) == 1.0
    assert structural_share(0.7) == pytest.approx(0.0) and structural_share(1.0) == pytest.approx(1.0)
    # falling back to the floor is transient even from a modest peak; keeping most of the structure is not
    down = forgetting_summary([{"step": i, "heldout": h} for i, h in enumerate([0.6, 0.82, 0.82, 0.72])])
    kept = forgetting_summary([{"step": i, "heldout": h} for i, h in enumerate([0.6, 0.96, 0.96, 0.87])])
    assert down["transient"] and not kept["transient"]


def one_head_model(task: POSTask, head: str) -> ToyTransformer:
    """One attention-only layer with one head on one-hot word embeddings (x 6, the norm of a fresh N(0, 1) row in 32
    dimensions): `head="match"` attends from every token to identical tokens, `head="copula"` to the copula only."""
    d_vocab = task.cfg.d_vocab
    cfg = ToyConfig(n_layers=1, n_heads=1, d_model=32, n_ctx=7, d_vocab=d_vocab, d_out=2, attn_only=True,
                    positional="none", normalization="none", embed_std=1.0)
    model = ToyTransformer(cfg, seed=0)
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.embed.W_E.copy_(6 * torch.eye(d_vocab, 32))
        if head == "match":
            attn.W_Q[0] = 10 * torch.eye(32)
            attn.W_K[0] = torch.eye(32)
        else:
            attn.W_Q.zero_()
            attn.b_Q[0] = 10.0
            attn.W_K[0] = torch.outer(torch.eye(32)[task.cfg.copula], torch.ones(32))
    return model.eval()


@pytest.mark.parametrize("head, match, copula", [("match", 0.5, 0.0), ("copula", 0.0, 1.0)])
def test_query_attention_of_hand_built_heads(head, match, copula):
    """A head that matches identical tokens splits the query's attention between itself and its occurrence (0.5 to the
    occurrence), fresh held-out words included; a copula head puts it all on the copula."""
    task = POSTask(POSConfig(n_words=20, n_heldout=10, p_ambiguous=0.2))
    att = query_attention(one_head_model(task, head), task, size=200)
    assert list(att) == list(QUERY_ATTENTION_SETS)  # ambiguous words included
    for kind, a in att.items():
        assert a["match"][0][0] == pytest.approx(match, abs=1e-3), kind
        assert a["copula"][0][0] == pytest.approx(copula, abs=1e-3), kind
        assert 0 <= a["accuracy"] <= 1
    with pytest.raises(IclensError):
        query_attention(one_head_model(task, head), task, draws=0)
    plain = POSTask(POSConfig(n_words=20, n_heldout=10, p_ambiguous=0.0))
    assert "ambiguous" not in query_attention(one_head_model(plain, head), plain, size=20)  # none to ask about


def test_query_attention_leaves_no_hook_and_restores_the_embeddings():
    task = POSTask(POSConfig(n_words=20, n_heldout=10))
    model = one_head_model(task, "match")
    before = model.embed.W_E.detach().clone()
    query_attention(model, task, size=50)
    assert torch.equal(model.embed.W_E, before)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())
