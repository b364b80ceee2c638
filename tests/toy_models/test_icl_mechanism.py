"""A hand-set induction-head classifier: it solves the ICL eval sets, scores as an induction head, and
ablating its layer-2 head drops ICL to chance; scores of an untrained network are at their uniform values."""

from __future__ import annotations

import pytest
import torch

from probes.errors import IclensError
from toy_models.classifier import (ClassifierConfig, ablate_head, handset_induction_model, has_hooks, head_scores,
                                   minimal_classifier)
from toy_models.tasks.classification import ClassificationConfig, ClassificationTask, accuracy


@pytest.fixture(scope="module")
def task():
    return ClassificationTask(ClassificationConfig(n_classes=256, burstiness=2, eps=0.1))


@pytest.fixture(scope="module")
def handset(task):
    return handset_induction_model(task)


def test_handset_model_solves_icl_and_flipped_labels(task, handset):
    for kind in ("icl", "flip", "train"):
        assert accuracy(task, handset, task.eval_batch(kind, 400)) == 1.0, kind
    # it has no in-weights knowledge: the query class absent from the context is a guess
    assert accuracy(task, handset, task.eval_batch("iwl", 400)) < 0.15


def test_handset_model_scores_as_induction_head(task, handset):
    s = head_scores(handset, task.eval_batch("icl", 300))
    assert s["prev_token_score"] > 0.99
    # the query's attention lies on the labels after its class's items (item 1 can also attract some: it sees itself)
    assert s["induction_score"] > 0.8


def test_untrained_network_scores_near_uniform(task):
    model = minimal_classifier(task.cfg, seed=0)
    b = task.eval_batch("icl", 300)
    s = head_scores(model, b)
    N, B = task.cfg.n_items, task.cfg.burstiness
    # small random weights: near-uniform attention; a label token at 2j+1 sees 2j+2 keys
    uniform_prev = sum(1 / (2 * j + 2) for j in range(N)) / N
    assert s["prev_token_score"] == pytest.approx(uniform_prev, abs=0.03)
    assert s["induction_score"] == pytest.approx(B / (2 * N + 1), abs=0.03)


def test_ablating_layer2_head_drops_icl_to_chance(task, handset):
    b = task.eval_batch("icl", 400)
    with ablate_head(handset, 1):
        acc = accuracy(task, handset, b)
    assert acc < 3 / task.cfg.n_labels + 0.05
    assert not has_hooks(handset)
    assert accuracy(task, handset, b) == 1.0  # restored after the context


def test_ablation_hook_removed_when_probe_raises(task, handset):
    with pytest.raises(RuntimeError):
        with ablate_head(handset, 1):
            assert has_hooks(handset)
            raise RuntimeError("probe failed")
    assert not has_hooks(handset)


def test_ablate_bad_head(handset):
    with pytest.raises(IclensError, match="2 layers"):
        with ablate_head(handset, 5):
            pass


def test_minimal_classifier_shape(task):
    model = minimal_classifier(task.cfg, seed=1)
    assert model.cfg.n_layers == 2 and model.cfg.n_heads == 1 and model.cfg.attn_only
    out = task.logits(model, task.sample(3, torch.Generator().manual_seed(0))["tokens"])
    assert out.shape == (3, task.cfg.n_labels)
    assert model.blocks[1].attn.W_O.shape == (1, model.cfg.d_head, model.cfg.d_model)


def test_identity_read_in_feeds_tokens_unchanged(task):
    """d_model = 0 (the default): the residual stream starts as [one-hot position | content] itself (Reddy)."""
    model = minimal_classifier(task.cfg, seed=1)
    assert model.cfg.d_model == task.cfg.d_in
    toks = task.sample(4, torch.Generator().manual_seed(0))["tokens"]
    _, cache = model.run_with_cache(toks, names_filter="hook_embed")
    assert torch.equal(cache["hook_embed"], toks)
    assert model.read_in.W_in.requires_grad  # still a parameter: forgetting schedules can reset it
    narrow = minimal_classifier(task.cfg, ClassifierConfig(d_model=32), seed=1)
    assert narrow.cfg.d_model == 32 and narrow.read_in.W_in.abs().max() < 0.2  # random N(0, 0.02) read-in
