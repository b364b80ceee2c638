"""Reddy's classification sampler against its definitions: burstiness, Zipf frequencies, labels, eval sets."""

from __future__ import annotations

import math

import pytest
import torch

from probes.errors import IclensError
from toy_models.tasks.classification import (ClassificationConfig, ClassificationTask, sample_without_replacement,
                                             zipf_probs)
from toy_models.tasks.registry import make_task


def _task(**kw):
    return ClassificationTask(ClassificationConfig(**{"n_classes": 64, "n_labels": 8, **kw}))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registered_and_shapes():
    task = make_task("icl-classification", n_classes=64, n_labels=8)
    b = task.sample(32, _gen())
    c = task.cfg
    assert b["tokens"].shape == (32, 2 * c.n_items + 1, c.pos_dim + c.dim)
    assert b["target"].shape == (32,) and b["labels"].shape == (32, c.n_items)
    # positions: one-hot, consecutive from a per-row random offset
    pos = b["tokens"][..., : c.pos_dim]
    assert torch.all(pos.sum(-1) == 1)
    idx = pos.argmax(-1)
    assert torch.all(idx[:, 1:] - idx[:, :-1] == 1)
    assert idx[:, 0].unique().numel() > 5


@pytest.mark.parametrize("B", [1, 2, 4, 8])
def test_bursty_context_has_n_over_b_classes_each_b_times(B):
    task = _task(burstiness=B, p_bursty=1.0)
    b = task.sample(400, _gen(B))
    N = task.cfg.n_items
    for row_cls, q_cls in zip(b["classes"][:, :N], b["classes"][:, N]):
        vals, counts = row_cls.unique(return_counts=True)
        assert len(vals) == N // B and torch.all(counts == B)
        assert q_cls in vals  # the query is one of the context classes
    assert torch.all(b["match"].sum(1) == B)


def test_fraction_of_bursty_sequences_and_iid_rows():
    task = _task(burstiness=4, p_bursty=0.3)
    b = task.sample(4000, _gen(1))
    frac = b["bursty"].float().mean().item()
    assert abs(frac - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)
    # non-bursty rows draw i.i.d.: with 64 uniform classes, repeats among 9 draws are rare but happen
    nb = b["classes"][~b["bursty"]]
    distinct = torch.tensor([len(r.unique()) for r in nb]).float().mean().item()
    expected = 64 * (1 - (63 / 64) ** 9)  # E[#distinct] of 9 uniform draws from 64
    assert abs(distinct - expected) < 0.1


def test_zipf_class_frequencies_match_definition():
    alpha = 1.0
    task = _task(burstiness=0, p_bursty=0.0, zipf_alpha=alpha, n_classes=32)
    b = task.sample(6000, _gen(2))
    counts = torch.bincount(b["classes"].flatten(), minlength=32).float()
    freq = counts / counts.sum()
    p = (torch.arange(1, 33).float() ** -alpha)
    p = p / p.sum()
    assert torch.allclose(zipf_probs(32, alpha), p)
    n = counts.sum()
    # every class within 5 binomial standard deviations of its Zipf probability
    assert torch.all((freq - p).abs() < 5 * torch.sqrt(p * (1 - p) / n))
    assert freq[0] / freq[9] == pytest.approx(10.0, rel=0.15)


def test_draws_without_replacement_follow_sequential_sampling():
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    draws = sample_without_replacement(p, 40000, 2, _gen(3))
    assert torch.all(draws[:, 0] != draws[:, 1])
    first = torch.bincount(draws[:, 0], minlength=4).float() / 40000
    assert torch.allclose(first, p, atol=0.01)  # the first pick has law p
    # P(second = j | first = 0) = p_j / (1 - p_0)
    sec = draws[draws[:, 0] == 0, 1]
    cond = torch.bincount(sec, minlength=4).float() / len(sec)
    assert torch.allclose(cond[1:], p[1:] / (1 - p[0]), atol=0.015)
    # a heavy head forces long streams (the refill path): still k distinct values per row
    skew = torch.tensor([0.97, 0.01, 0.01, 0.01])
    d = sample_without_replacement(skew, 2000, 4, _gen(4))
    assert all(len(r.unique()) == 4 for r in d)
    assert (d[:, 0] == 0).float().mean().item() == pytest.approx(0.97, abs=0.015)
    with pytest.raises(IclensError, match="distinct"):
        sample_without_replacement(torch.tensor([0.5, 0.5, 0.0]), 3, 3, _gen(5))


def test_label_mapping_is_class_mod_l_and_label_tokens_carry_label_vectors():
    task = _task(burstiness=2, p_bursty=0.5)
    b = task.sample(300, _gen(4))
    N, P = task.cfg.n_items, task.cfg.pos_dim
    assert torch.equal(b["labels"], b["classes"][:, :N] % task.cfg.n_labels)
    assert torch.equal(b["target"], b["classes"][:, N] % task.cfg.n_labels)
    label_content = b["tokens"][:, 1:2 * N:2, P:]
    assert torch.allclose(label_content, task.label_vecs[b["labels"]])


def test_items_are_noisy_class_means_with_unit_scale():
    eps = 0.4
    task = _task(burstiness=4, eps=eps, dim=63)
    b = task.sample(2000, _gen(5))
    P, N = task.cfg.pos_dim, task.cfg.n_items
    items = b["tokens"][:, 0:2 * N:2, P:]
    means = task.means[b["classes"][:, :N]]
    resid = items * math.sqrt(1 + eps ** 2) - means  # = eps * eta, eta ~ N(0, I/D)
    assert resid.pow(2).sum(-1).mean().item() == pytest.approx(eps ** 2, rel=0.05)
    assert items.pow(2).sum(-1).mean().item() == pytest.approx(1.0, rel=0.05)


def test_eval_sets():
    task = _task(burstiness=2)
    N, L = task.cfg.n_items, task.cfg.n_labels
    icl = task.eval_batch("icl", 500)
    assert icl["novel"].all() and icl["bursty"].all()
    # the target is the label the context gives the query's class
    assert torch.all((icl["labels"] == icl["target"][:, None])[icl["match"]])
    # novel classes: item contents are not training means
    items = icl["tokens"][:, 0, task.cfg.pos_dim:]
    nearest = torch.cdist(items * math.sqrt(1 + 0.01), task.means).min(-1).values
    assert nearest.min() > 0.3
    flip = task.eval_batch("flip", 500)
    assert torch.all(flip["target"] != flip["classes"][:, N] % L)
    assert torch.all((flip["labels"] == flip["target"][:, None])[flip["match"]])
    iwl = task.eval_batch("iwl", 500)
    assert not iwl["match"].any() and not iwl["bursty"].any()
    assert torch.equal(iwl["target"], iwl["classes"][:, N] % L)
    # fixed seeds: the same set twice
    assert torch.equal(task.eval_batch("icl", 20)["tokens"], task.eval_batch("icl", 20)["tokens"])


def test_novel_fraction_in_training():
    task = _task(burstiness=4, p_novel=0.25)
    b = task.sample(4000, _gen(6))
    assert abs(b["novel"].float().mean().item() - 0.25) < 0.03


@pytest.mark.parametrize("kw, msg", [
    ({"burstiness": 3}, "divide"),
    ({"p_bursty": 1.5}, "p_bursty"),
    ({"pos_dim": 10}, "pos_dim"),
    ({"n_classes": 1}, "n_classes"),
])
def test_bad_config(kw, msg):
    with pytest.raises(IclensError, match=msg):
        ClassificationConfig(**kw)


def test_unknown_eval_set():
    with pytest.raises(IclensError, match="icl, flip"):
        _task().eval_batch("nope", 4)
