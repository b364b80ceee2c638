"""Transition detection on known curves, the nested-logit model and its fit, and a tiny training run."""

from __future__ import annotations

import numpy as np
import torch
import pytest

from probes.errors import IclensError
from toy_models.classifier import has_hooks, minimal_classifier
from toy_models.icl_iwl_experiment import (ICLRunConfig, detect_transition, fit_nested_logits, load_run,
                                           nested_logit_curve, run_training, summarize)

KW = {"n_items": 8, "burstiness": 4, "n_labels": 32}


def test_detect_transition_on_a_sigmoid_with_an_early_partial_rise():
    s = np.arange(0, 10000, 50)
    # rise to a plateau at 0.45 by step 300, then an abrupt jump to 1.0 centred at 6000
    v = 0.03 + 0.42 * (1 - np.exp(-s / 100)) + 0.55 / (1 + np.exp(-(s - 6000) / 60))
    t = detect_transition(s, v)
    assert abs(t["step"] - 6000) <= 50 and t["abrupt"]
    assert t["plateau"] == pytest.approx(0.45, abs=0.01) and t["final"] == pytest.approx(1.0, abs=0.01)
    assert 5700 <= t["start"] < t["step"] < t["end"] <= 6300
    slow = 0.1 + 0.8 * s / s.max()  # a linear climb is not abrupt
    assert not detect_transition(s, slow)["abrupt"]
    assert detect_transition(s, np.full(len(s), 0.3)) is None  # flat: no transition


def test_nested_logits_plateau_then_jump_and_timescale():
    t_by_eta = {}
    for eta in (0.05, 0.1):
        c = nested_logit_curve(eta, -2.0, 16000, record_every=10, **KW)
        t = detect_transition(np.arange(len(c["p"])) * 10, c["p"])
        # the plateau sits at "one of the N/B context labels", the end near certainty, the jump abrupt
        assert t["plateau"] == pytest.approx(0.5, abs=0.03) and t["final"] > 0.95 and t["abrupt"]
        t_by_eta[eta] = t["step"]
    # gradient descent: the time to the transition scales as 1 / eta
    assert t_by_eta[0.05] / t_by_eta[0.1] == pytest.approx(2.0, rel=0.05)


def test_fit_recovers_the_transition_of_a_model_generated_curve():
    c = nested_logit_curve(0.1, -2.0, 4000, record_every=1, **KW)
    s = np.arange(0, 4000, 100)
    fit = fit_nested_logits(s, c["loss"][s], icl_acc=c["p"][s], **KW)
    assert fit["rmse"] < 0.05
    assert abs(fit["predicted_transition"] - fit["measured_transition"]) <= 150
    with pytest.raises(IclensError, match="3 evaluation points"):
        fit_nested_logits(s, c["loss"][s], fit_until=100, **KW)


def test_tiny_training_run_and_summary(tmp_path):
    cfg = ICLRunConfig(n_classes=32, n_labels=8, dim=15, n_items=4, burstiness=2, d_model=32, mlp_hidden=16,
                       steps=40, batch_size=16, eval_every=10, eval_size=32, checkpoint_every=20, seed=3)
    model, task, res = run_training(cfg, tmp_path / "run", progress=False)
    assert [e["step"] for e in res.evals] == [10, 20, 30, 40]
    assert res.losses[-1] < res.losses[0]
    r = summarize(model, task, cfg, res)
    assert set(r["curves"]) >= {"icl_acc", "iwl_acc", "flip_acc", "prev_token_score", "induction_score", "icl_loss"}
    assert set(r["ablation"]) == {"intact", "layer2_ablated", "layer1_ablated", "chance"}
    assert "whole_run" in r["nested_logit_fit"]
    assert not has_hooks(model)
    loaded, _, cfg2 = load_run(tmp_path / "run")
    assert cfg2 == cfg
    batch = task.eval_batch("icl", 16)
    assert np.allclose(task.logits(loaded, batch["tokens"]).detach(), task.logits(model, batch["tokens"]).detach())


def test_bad_run_config():
    with pytest.raises(IclensError, match="divide"):
        ICLRunConfig(burstiness=3)
    with pytest.raises(IclensError, match="eval_size"):
        ICLRunConfig(eval_size=2)


def test_sgd_option_reaches_the_optimiser_and_the_init_scale_the_network():
    """The paper's optimiser (SGD with momentum) and the weight scale are run options, not hard-wired."""
    from toy_models.train import make_optimizer

    cfg = ICLRunConfig(n_classes=32, n_labels=8, dim=15, n_items=4, burstiness=2, d_model=32, mlp_hidden=16,
                       optimizer="sgd", lr=0.05, momentum=0.9, init_std=0.05)
    model = minimal_classifier(cfg.task_config(), cfg.classifier_config(), seed=0)
    opt = make_optimizer(model, cfg.train_config())
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    assert model.blocks[0].attn.W_Q.std().item() == pytest.approx(0.05, rel=0.2)
    with pytest.raises(IclensError, match="momentum"):
        ICLRunConfig(optimizer="sgd", momentum=1.5)
