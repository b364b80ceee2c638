"""The same circuits functions on a toy_models.ToyTransformer (HookedRootModule, LayerNorm, MLPs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuits_testkit import assert_no_hooks

from circuits.ablation import all_heads, knock_out
from circuits.attribution import attribution_patch, edge_attribution
from circuits.circuit_finder import find_circuit
from circuits.path_patching import path_patch
from circuits.patching import Patch, activation_patch, cache_hooks, head_sweep, mlp_sweep, run_variants, task_metric
from circuits.tasks import PatchTask

toy_models = pytest.importorskip("toy_models.models")


@pytest.fixture(scope="module")
def toy():
    cfg = toy_models.ToyConfig(n_layers=2, n_heads=2, d_model=16, d_vocab=12, d_out=12, n_ctx=8, init_std=0.5)
    return toy_models.ToyTransformer(cfg, seed=0).eval()


@pytest.fixture(scope="module")
def toy_task():
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(0, 12, (10, 6), generator=g)
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + 1 + torch.randint(0, 10, (10,), generator=g)) % 12
    answer = torch.randint(0, 12, (10,), generator=g)
    return PatchTask("toy", clean, corrupted, answer, (answer + 3) % 12)


def test_limits_and_batching_on_toy(toy, toy_task):
    metric = task_metric(toy, toy_task)
    src = cache_hooks(toy, toy_task.clean, ["blocks.0.hook_resid_pre"])
    vals, _ = run_variants(toy, toy_task.corrupted, [[], [Patch("blocks.0.hook_resid_pre")]], src,
                           lambda lg: metric(lg, toy_task.answer, toy_task.wrong))
    torch.testing.assert_close(vals, torch.tensor([0.0, 1.0]), atol=1e-4, rtol=0)
    a = activation_patch(toy, toy_task, head_sweep(toy), max_batch=10).values
    b = activation_patch(toy, toy_task, head_sweep(toy), max_batch=400).values
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert activation_patch(toy, toy_task, mlp_sweep(toy)).values.shape == (2,)
    assert_no_hooks(toy)


def test_eap_identity_and_circuit_on_toy(toy, toy_task):
    # Toy resid hooks sit on the residual stream itself: node inputs come from gradient differences.
    e = edge_attribution(toy, toy_task)
    node = attribution_patch(toy, toy_task, head_sweep(toy)).values
    for l in range(2):
        for h in range(2):
            assert sum(s for u, _, s in e.edges if u == f"L{l}H{h}") == pytest.approx(node[l, h], abs=1e-4)
    circ = find_circuit(toy, toy_task, threshold=0.7)
    rest = [h for h in all_heads(toy) if h not in circ.heads]
    # faithfulness is what an independent knock-out of the complement measures
    assert knock_out(toy, toy_task, rest) == pytest.approx(circ.faithfulness, abs=1e-5)
    assert circ.faithfulness >= 0.7
    r = path_patch(toy, toy_task, [(0, 0), (0, 1)], [(1, 0), (1, 1)])
    assert r.scores.shape == (2, 3) and np.isfinite(r.scores).all()
    assert_no_hooks(toy)
