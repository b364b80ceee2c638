"""Activation patching: known answers on the hand-built model, clean/corrupted limits, hooks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuits_testkit import assert_no_hooks

from circuits.patching import (Patch, activation_patch, cache_hooks, check_hook_names, head_pos_sweep, head_sweep,
                               make_sweep, mlp_sweep, pattern_sweep, resid_sweep, run_variants, task_metric, value_sweep)
from circuits.tasks import PatchTask
from probes.errors import IclensError


def test_handbuilt_heads_and_residual_are_recovered_exactly(handbuilt, hb_task):
    heads = activation_patch(handbuilt, hb_task, head_sweep(handbuilt)).values
    expected = np.zeros((2, 4))
    expected[0, 0] = expected[1, 1] = 1.0  # the mover L0H0 and the reader L1H1, by construction
    np.testing.assert_allclose(heads, expected, atol=1e-5)
    resid = activation_patch(handbuilt, hb_task, resid_sweep(handbuilt, hb_task.n_pos)).values
    want = np.zeros((2, hb_task.n_pos))
    want[0, 1] = 1.0  # the token at position 1 before layer 0
    want[1, -1] = 1.0  # the moved token at the last position before layer 1
    np.testing.assert_allclose(resid, want, atol=1e-5)
    per_pos = activation_patch(handbuilt, hb_task, head_pos_sweep(handbuilt, hb_task.n_pos)).values
    assert per_pos.shape == (2, hb_task.n_pos, 4)
    np.testing.assert_allclose(per_pos[:, -1], expected, atol=1e-5)  # only the last position is read
    np.testing.assert_allclose(per_pos[:, :-1], 0, atol=1e-5)
    np.testing.assert_allclose(activation_patch(handbuilt, hb_task, value_sweep(handbuilt)).values, expected, atol=1e-5)
    # attention patterns are positional here, identical on both runs: patching them changes nothing
    np.testing.assert_allclose(activation_patch(handbuilt, hb_task, pattern_sweep(handbuilt)).values, 0, atol=1e-5)
    assert_no_hooks(handbuilt)


def test_noising_is_the_mirror_of_denoising(handbuilt, hb_task):
    r = activation_patch(handbuilt, hb_task, head_sweep(handbuilt), direction="noise").values
    assert r[0, 0] == pytest.approx(0, abs=1e-5) and r[1, 1] == pytest.approx(0, abs=1e-5)
    assert r[0, 1] == pytest.approx(1, abs=1e-5)


def _everything(model):
    L = model.cfg.n_layers
    return ([Patch("hook_embed")] + [Patch(f"blocks.{l}.hook_attn_out") for l in range(L)]
            + [Patch(f"blocks.{l}.hook_mlp_out") for l in range(L)])


def test_patch_all_recovers_clean_and_nothing_leaves_corrupted(tiny_model):
    from circuits.tasks import make_task

    task = make_task(tiny_model, "ioi", n=6)
    metric = task_metric(tiny_model, task)
    allp = _everything(tiny_model)
    src = cache_hooks(tiny_model, task.clean, sorted({p.hook for p in allp}) + ["blocks.0.hook_resid_pre"])
    vals, _ = run_variants(tiny_model, task.corrupted, [[], allp, [Patch("blocks.0.hook_resid_pre")]], src,
                           lambda lg: metric(lg, task.answer, task.wrong), max_batch=6)  # one variant per forward
    torch.testing.assert_close(vals, torch.tensor([0.0, 1.0, 1.0]), atol=1e-4, rtol=0)
    # batched and unbatched evaluation agree
    full = activation_patch(tiny_model, task, head_sweep(tiny_model), max_batch=1000).values
    single = activation_patch(tiny_model, task, head_sweep(tiny_model), max_batch=1).values
    np.testing.assert_allclose(full, single, atol=1e-5)
    assert activation_patch(tiny_model, task, mlp_sweep(tiny_model)).values.shape == (2,)
    assert_no_hooks(tiny_model)


def test_hooks_are_removed_when_the_metric_raises(tiny_model, handbuilt, hb_task):
    def boom(_):
        raise RuntimeError("metric failed")

    for model, tokens in ((handbuilt, hb_task.corrupted), (tiny_model, tiny_model.to_tokens("the cat saw the dog"))):
        src = cache_hooks(model, tokens, ["blocks.0.attn.hook_z"])
        with pytest.raises(RuntimeError, match="metric failed"):
            run_variants(model, tokens, [[Patch("blocks.0.attn.hook_z", (None, 1))]], src, boom,
                         record=["blocks.1.hook_resid_pre"])
        assert_no_hooks(model)


def test_unknown_hook_lists_close_matches(tiny_model):
    with pytest.raises(IclensError, match="close matches: blocks.0.attn.hook_z") as e:
        check_hook_names(tiny_model, ["blocks.0.attn.hook_zz"])
    assert "\n" not in str(e.value)
    with pytest.raises(IclensError, match="unknown sweep"):
        make_sweep(tiny_model, "neurons", 4)


def test_pairs_of_different_lengths_are_rejected(tiny_model):
    from circuits.tasks import task_from_pairs

    with pytest.raises(IclensError, match="token lengths 6 .clean. and 5"):
        task_from_pairs(tiny_model, "mine", ["mary gave the ball to"], ["mary gave ball to"], [" john"], [" mary"])
    with pytest.raises(IclensError, match="different token shapes"):
        PatchTask("x", torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long),
                  torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
