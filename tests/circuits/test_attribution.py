"""Attribution patching and EAP: exact on a linear model, close on a tiny bridge, edge/node identity."""

from __future__ import annotations

import numpy as np
import pytest
from circuits_testkit import assert_no_hooks

from circuits.attribution import agreement, attribution_patch, edge_attribution
from circuits.patching import activation_patch, head_pos_sweep, head_sweep, resid_sweep
from circuits.tasks import make_task


def test_attribution_equals_activation_on_a_model_linear_in_the_patched_activation(handbuilt, hb_task):
    # Every attention pattern of the hand-built model is positional, so the logits are linear in
    # each hook_z and in the residual stream: the first-order estimate must be exact.
    for sweep in (head_sweep(handbuilt), resid_sweep(handbuilt, hb_task.n_pos), head_pos_sweep(handbuilt, hb_task.n_pos)):
        exact = activation_patch(handbuilt, hb_task, sweep).values
        approx = attribution_patch(handbuilt, hb_task, sweep).values
        np.testing.assert_allclose(approx, exact, atol=1e-5)
    assert_no_hooks(handbuilt)


def test_eap_edges_on_handbuilt_are_the_circuit_and_sum_to_node_scores(handbuilt, hb_task):
    e = edge_attribution(handbuilt, hb_task)
    assert e.per_head
    top = {(u, v): s for u, v, s in e.edges if abs(s) > 1e-4}
    assert top.keys() == {("embed", "A0"), ("L0H0", "A1"), ("L1H1", "logits")}
    assert all(s == pytest.approx(1.0, abs=1e-5) for s in top.values())
    assert_no_hooks(handbuilt)


def test_eap_outgoing_edges_sum_to_node_attribution(tiny_model):
    # d metric / d head output = sum over readers of d metric / d reader input (residual telescopes),
    # so the sum of a node's outgoing EAP scores equals its node-level attribution.
    task = make_task(tiny_model, "ioi", n=6)
    e = edge_attribution(tiny_model, task)
    assert e.per_head  # Llama attention output is sum_h z_h W_O[h]
    node = attribution_patch(tiny_model, task, head_sweep(tiny_model)).values  # corrupted baseline 0 + estimate
    for l in range(2):
        for h in range(4):
            out = sum(s for u, _, s in e.edges if u == f"L{l}H{h}")
            assert out == pytest.approx(node[l, h], abs=2e-4)
    assert_no_hooks(tiny_model)


def test_attribution_tracks_activation_on_tiny_bridge(tiny_model):
    task = make_task(tiny_model, "ioi", n=8)
    exact = activation_patch(tiny_model, task, head_sweep(tiny_model)).values
    approx = attribution_patch(tiny_model, task, head_sweep(tiny_model)).values
    ag = agreement(exact, approx)
    assert ag["pearson"] > 0.95, ag
    assert np.abs(approx).max() > 0.05  # gradients reached hook_z (a None-returning hook would give zeros)
    assert_no_hooks(tiny_model)


def test_a_raising_metric_leaves_no_hooks_and_restores_requires_grad(handbuilt, hb_task):
    from circuits.attribution import metric_grads

    def boom(*_):
        raise RuntimeError("metric failed")

    for p in handbuilt.parameters():
        p.requires_grad_(False)
    with pytest.raises(RuntimeError, match="metric failed"):
        metric_grads(handbuilt, hb_task, ["blocks.0.attn.hook_z", "blocks.1.hook_resid_pre"], boom)
    assert not any(p.requires_grad for p in handbuilt.parameters())
    assert_no_hooks(handbuilt)
    # and with parameters frozen, gradients still reach the activations (switched on inside, then restored)
    est = attribution_patch(handbuilt, hb_task, head_sweep(handbuilt)).values
    assert est[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert not any(p.requires_grad for p in handbuilt.parameters())
    for p in handbuilt.parameters():
        p.requires_grad_(True)
