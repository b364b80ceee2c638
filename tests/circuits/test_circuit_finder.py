"""Ablation, knock-out, circuit finding and path patching on the hand-built model (known circuit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from circuits_testkit import assert_no_hooks

from circuits.ablation import ablation_curve, ablation_sources, component_patch, knock_out
from circuits.circuit_finder import find_circuit
from circuits.path_patching import path_patch
from circuits.patching import activation_patch, head_sweep
from probes.errors import IclensError


def test_circuit_finder_recovers_exactly_the_constructed_circuit(handbuilt, hb_task):
    greedy = find_circuit(handbuilt, hb_task, threshold=0.9)
    assert greedy.heads == ["L0H0", "L1H1"] and greedy.faithfulness == pytest.approx(1.0, abs=1e-5)
    scores = activation_patch(handbuilt, hb_task, head_sweep(handbuilt)).values
    ranked = find_circuit(handbuilt, hb_task, threshold=0.9, method="ranked", scores=scores, ablation="mean",
                          reference=hb_task.corrupted)
    assert ranked.heads == ["L0H0", "L1H1"]
    assert_no_hooks(handbuilt)


def test_knock_out_each_kind_of_ablation(handbuilt, hb_task):
    # Distractor heads write only into a subspace nothing reads: removing them costs nothing.
    for method in ("zero", "mean", "resample"):
        assert knock_out(handbuilt, hb_task, ["L0H1", "L0H2", "L1H0", "L1H3"], method=method,
                         reference=hb_task.corrupted) == pytest.approx(1.0, abs=1e-5)
    # Zero-ablating the mover leaves logit(answer) = logit(wrong) = 0: LD 0, exactly halfway (clean +1, corrupted -1).
    assert knock_out(handbuilt, hb_task, ["L0H0"], method="zero") == pytest.approx(0.5, abs=1e-5)
    # Resampling the mover from the corrupted run *of the same prompt* is the corrupted run.
    same = knock_out(handbuilt, hb_task, ["R0P1"], method="resample", reference=hb_task.corrupted[:1])
    assert same < 0.5
    curve = ablation_curve(handbuilt, hb_task, ["L0H1", "L1H1", "L0H0"], method="zero")
    assert curve[:2] == pytest.approx([1.0, 1.0], abs=1e-5) and curve[2] == pytest.approx(0.5, abs=1e-5)
    assert_no_hooks(handbuilt)


def test_mean_ablation_source_is_the_reference_mean(handbuilt, hb_task):
    src = ablation_sources(handbuilt, hb_task.clean, ["blocks.0.attn.hook_z"], "mean", reference=hb_task.corrupted)
    _, cache = handbuilt.run_with_cache(hb_task.corrupted)
    want = cache["blocks.0.attn.hook_z"].mean(0)
    torch.testing.assert_close(src["ablate:blocks.0.attn.hook_z"][3], want)


def test_bad_ablation_inputs(handbuilt, hb_task):
    with pytest.raises(IclensError, match="non-empty reference set"):
        knock_out(handbuilt, hb_task, ["L0H0"], method="mean", reference=hb_task.clean[:0])
    with pytest.raises(IclensError, match="same token length"):
        knock_out(handbuilt, hb_task, ["L0H0"], method="mean", reference=hb_task.clean[:, :3])
    with pytest.raises(IclensError, match="unknown ablation"):
        knock_out(handbuilt, hb_task, ["L0H0"], method="gaussian")
    with pytest.raises(IclensError, match="unknown component"):
        component_patch(handbuilt, "head3")
    with pytest.raises(IclensError, match="layers 0..1"):
        component_patch(handbuilt, "L5H0")
    with pytest.raises(IclensError, match="needs scores"):
        find_circuit(handbuilt, hb_task, method="ranked")
    assert_no_hooks(handbuilt)


def test_path_patching_finds_the_value_composition(handbuilt, hb_task):
    r = path_patch(handbuilt, hb_task, [(0, 0), (0, 1), (0, 3)], [(1, 1)])
    # L0H0 reaches the reader through its values only; distractors reach nothing.
    np.testing.assert_allclose(r.scores, [[0, 0, 1], [0, 0, 0], [0, 0, 0]], atol=1e-5)
    r2 = path_patch(handbuilt, hb_task, [(0, 0)], [(1, 0), (1, 2)], via=["v"])
    np.testing.assert_allclose(r2.scores, [[0.0]], atol=1e-5)
    with pytest.raises(IclensError, match="earlier layer"):
        path_patch(handbuilt, hb_task, [(1, 0)], [(1, 1)])
    assert_no_hooks(handbuilt)
