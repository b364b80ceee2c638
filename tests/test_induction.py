"""Induction / n-gram head probes: a hand-built model with known heads, TL's detector, invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformer_lens.head_detector import detect_head

from handbuilt import DUP, IND, PREV, PREV2, TRIGRAM, build_handbuilt_induction_model
from probes import induction
from probes.errors import IclensError
from probes.head_scores import offset_diagonal_score, repeated_scores
from probes.hooks import active_hooks
from probes.induction import InductionResult, ScanConfig


@pytest.fixture(scope="module")
def handbuilt():
    return build_handbuilt_induction_model()


@pytest.fixture(scope="module")
def handbuilt_result(handbuilt):
    return induction.scan(handbuilt, n_prompts=4, seq_len=24, seed=0)


def heads_above(res, score, thr):
    m = np.asarray(res.scores[score].mean)
    return {(int(L), int(H)) for L, H in zip(*np.where(m > thr))}


def test_handbuilt_previous_and_duplicate_heads(handbuilt_result):
    assert heads_above(handbuilt_result, "previous_token", 0.9) == {PREV}
    assert handbuilt_result.top("duplicate_token", 1)[0][:2] == DUP
    # It attends to every copy of its token, itself included: half on the earlier copy.
    assert handbuilt_result.top("duplicate_token", 1)[0][2] == pytest.approx(0.5, abs=0.02)
    assert heads_above(handbuilt_result, "duplicate_token", 0.2) == {DUP}


def test_handbuilt_induction_and_ngram_heads(handbuilt_result):
    r = handbuilt_result
    # On repeated distinct tokens the 3-gram head cannot be told from the induction head ...
    assert heads_above(r, "induction", 0.9) == {IND, TRIGRAM}
    # ... on n-gram sequences it can.
    assert r.top("ngram_2", 1)[0][:2] == IND
    assert r.top("ngram_3", 1)[0][:2] == TRIGRAM and r.top("ngram_3", 1)[0][2] > 0.95
    ind_ng3 = r.scores["ngram_3"].mean[IND[0]][IND[1]]
    assert ind_ng3 < 0.6, "an induction head spreads over every 2-gram match"
    assert r.top("ngram_4", 1)[0][:2] == TRIGRAM
    assert PREV2 not in heads_above(r, "previous_token", 0.5)


def test_handbuilt_dla_and_icl_score(handbuilt_result):
    r = handbuilt_result
    dla = np.asarray(r.scores["dla"].mean)
    assert r.top("dla", 1)[0][:2] == IND
    others = np.delete(dla.ravel(), IND[0] * r.n_heads + IND[1])
    assert np.abs(others).max() < 1e-3, "heads that write nothing have no direct effect"
    assert r.second_half_loss < 0.01 * r.first_half_loss and r.icl_score < -10


def test_scores_agree_with_transformerlens_head_detector(tiny_model):
    words = [f"w{i}" for i in range(20)]
    text = " ".join(words + words)
    toks = tiny_model.to_tokens(text)
    T, seq_len = toks.shape[1], len(words)
    _, cache = tiny_model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    for L in range(tiny_model.cfg.n_layers):
        pat = cache[f"blocks.{L}.attn.hook_pattern"]
        ours = repeated_scores(pat, seq_len, bos=True)
        # TL's "mul" score divides by all T query rows; ours averages over the rows where a score is defined.
        tl_prev = detect_head(tiny_model, text, "previous_token_head")[L]
        torch.testing.assert_close(offset_diagonal_score(pat, 1, 1)[0] * (T - 1) / T, tl_prev.float(), atol=1e-5, rtol=1e-4)
        tl_ind = detect_head(tiny_model, text, "induction_head")[L]
        torch.testing.assert_close(ours["induction"][0] * seq_len / T, tl_ind.float(), atol=1e-5, rtol=1e-4)
        tl_dup = detect_head(tiny_model, text, "duplicate_token_head")[L]
        torch.testing.assert_close(ours["duplicate_token"][0] * seq_len / T, tl_dup.float(), atol=1e-5, rtol=1e-4)


def test_same_seed_same_result_other_seed_differs(tiny_model):
    a = induction.scan(tiny_model, n_prompts=3, seq_len=8, seed=1)
    b = induction.scan(tiny_model, n_prompts=3, seq_len=8, seed=1)
    c = induction.scan(tiny_model, n_prompts=3, seq_len=8, seed=2)
    assert a.scores["induction"].mean == b.scores["induction"].mean
    assert a.scores["induction"].mean != c.scores["induction"].mean


def test_batching_does_not_change_scores(tiny_model):
    a = induction.scan(tiny_model, n_prompts=5, seq_len=8, seed=0, batch_size=5)
    b = induction.scan(tiny_model, n_prompts=5, seq_len=8, seed=0, batch_size=2)
    for k in a.scores:
        np.testing.assert_allclose(a.scores[k].mean, b.scores[k].mean, atol=1e-5)
    np.testing.assert_allclose(a.loss_by_position, b.loss_by_position, atol=1e-4)


def test_result_json_roundtrip(tmp_path, tiny_model):
    res = induction.scan(tiny_model, n_prompts=2, seq_len=8, seed=0)
    path = res.save(tmp_path / "result.json")
    data = json.loads(path.read_text())
    for name, s in data["scores"].items():
        assert np.asarray(s["mean"]).shape == (2, 4), name
        assert np.asarray(s["std"]).shape == (2, 4), name
    back = InductionResult.load(path)
    assert back.top("induction", 3) == res.top("induction", 3)
    assert back.config == res.config


def test_probe_that_raises_leaves_no_hooks(tiny_model):
    def boom(frac, msg):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        induction.scan(tiny_model, n_prompts=2, seq_len=8, progress=boom)
    assert active_hooks(tiny_model) == []

    def bad_transform_shape(frac, msg):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError):
        induction.scan(tiny_model, n_prompts=2, seq_len=8, progress=bad_transform_shape)
    assert active_hooks(tiny_model) == []


@pytest.mark.parametrize("kwargs, match", [
    ({"ngram_orders": (1, 2)}, "n-gram orders"),
    ({"n_prompts": 0}, "n_prompts"),
    ({"seq_len": 2}, "seq_len"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(IclensError, match=match):
        ScanConfig(**kwargs)


def test_sequence_longer_than_context(tiny_model):
    with pytest.raises(IclensError, match="context"):
        induction.scan(tiny_model, n_prompts=1, seq_len=100)


def test_natural_text_icl_score(tmp_path, handbuilt):
    """On text that repeats itself, the hand-built induction model's late loss is far below its early loss."""
    from probes.icl_score import natural_text_icl

    words = [f"w{i}" for i in range(40)]
    (tmp_path / "t.txt").write_text(" ".join(words * 10))
    nt = natural_text_icl(handbuilt, str(tmp_path / "t.txt"), n_contexts=2, early=5, late=100, window=10)
    assert nt.n_contexts == 2 and len(nt.loss_by_position) == 110
    assert nt.early_loss > 10 * nt.late_loss and nt.icl_score < 0
    with pytest.raises(IclensError, match="context"):
        natural_text_icl(handbuilt, str(tmp_path / "t.txt"), late=1000)
