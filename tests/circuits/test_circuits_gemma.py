"""A few checks on the embedded Gemma 3 270M (marked embedded; converted once, then cached)."""

from __future__ import annotations

import numpy as np
import pytest
from circuits_testkit import assert_no_hooks

from circuits.attribution import attribution_patch, edge_attribution
from circuits.patching import Patch, activation_patch, head_sweep, task_metric
from circuits.patching import Sweep
from circuits.tasks import make_task

pytestmark = pytest.mark.embedded


def test_gemma_ioi_attribution_and_exact_patching_agree_on_top_heads(gemma):
    task = make_task(gemma, "ioi", n=4)
    metric = task_metric(gemma, task)
    assert metric.clean_ld > 1 > -1 > metric.corrupted_ld  # Gemma does IOI; swapping names flips it
    approx = attribution_patch(gemma, task, head_sweep(gemma), metric=metric).values
    assert np.abs(approx).max() > 0.05  # gradients reach hook_z through the bridge
    top = np.argsort(-np.abs(approx).ravel())[:3]
    H = gemma.cfg.n_heads
    sweep = Sweep("top heads", [[Patch(f"blocks.{i // H}.attn.hook_z", (None, int(i % H)))] for i in top], (3,), ("head",))
    exact = activation_patch(gemma, task, sweep, metric=metric).values
    assert np.sign(exact[0]) == np.sign(approx.ravel()[top[0]])
    e = edge_attribution(gemma, task, metric=metric)
    assert not e.per_head  # Gemma 3's post-attention norm mixes heads: EAP nodes are attention layers
    assert {u for u, _, _ in e.edges} >= {"embed", "A0", "M17"}
    assert_no_hooks(gemma)


def test_gemma_path_patching_shares_key_value_heads_across_a_query_group(gemma):
    from circuits.path_patching import path_patch

    task = make_task(gemma, "ioi", n=4)
    metric = task_metric(gemma, task)
    a = path_patch(gemma, task, [(4, 1)], [(11, 3)], metric=metric).scores[0]
    b = path_patch(gemma, task, [(4, 1)], [(11, 0)], metric=metric).scores[0]
    # Gemma 3 has one key/value head per layer: via k and via v both receivers read the same input.
    np.testing.assert_allclose(a[1:], b[1:], atol=1e-5)
    assert abs(a[0] - b[0]) > 1e-6  # queries are per head
    assert_no_hooks(gemma)
