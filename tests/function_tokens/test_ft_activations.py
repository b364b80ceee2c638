"""Activation cache: early stop equals a full forward, a killed run resumes to the same bytes, bad resumes refuse."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from probes.activations import ActivationConfig, ActivationStore, activation_mean, collect_activations, shard_path
from probes.corpus import CorpusConfig
from probes.errors import IclensError


def _corpus(path, **kw):
    return CorpusConfig(source=str(path), seq_len=16, **kw)


def test_cached_activations_equal_full_forward_resid_pre(tiny_model, small_corpus, tmp_path):
    store = collect_activations(tiny_model, _corpus(small_corpus, max_tokens=16 * 12), tmp_path / "c",
                                ActivationConfig(layer=1, batch_size=4, shard_sequences=8), progress=False)
    assert store.n_sequences == 12 and len(store.shards) == 2 and store.meta["complete"]
    acts, toks = store.load_shard(1)
    assert acts.shape == (4, 16, tiny_model.cfg.d_model)
    _, cache = tiny_model.run_with_cache(toks, names_filter="blocks.1.hook_resid_pre")
    torch.testing.assert_close(acts, cache["blocks.1.hook_resid_pre"], rtol=1e-5, atol=1e-6)
    flat, ftoks = next(store.iter_tokens())  # BOS position dropped
    assert flat.shape == (8 * 15, tiny_model.cfg.d_model) and not (ftoks == tiny_model.tokenizer.bos_token_id).any()
    torch.testing.assert_close(activation_mean(store), torch.cat([x for x, _ in store.iter_tokens()]).mean(0))


class Killed(RuntimeError):
    pass


def test_killed_run_resumes_to_the_uninterrupted_cache(tiny_model, small_corpus, tmp_path):
    corpus = _corpus(small_corpus, max_tokens=16 * 22)
    cfg = ActivationConfig(layer=1, batch_size=2, shard_sequences=4)
    full = collect_activations(tiny_model, corpus, tmp_path / "full", cfg, progress=False)

    calls = {"n": 0}

    def die_on_fifth_batch(x, hook):
        calls["n"] += 1
        if calls["n"] == 5:
            raise Killed("simulated kill")
        return x

    with pytest.raises(Killed):
        with tiny_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", die_on_fifth_batch)]):
            collect_activations(tiny_model, corpus, tmp_path / "resumed", cfg, progress=False)
    assert [p.name for p in (tmp_path / "resumed").glob("shard_*")] and len(ActivationStore(tmp_path / "resumed").shards) == 2
    first_mtime = shard_path(tmp_path / "resumed", 0).stat().st_mtime_ns

    calls["n"] = 0

    def count(x, hook):
        calls["n"] += 1
        return x

    with tiny_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", count)]):
        resumed = collect_activations(tiny_model, corpus, tmp_path / "resumed", cfg, progress=False)
    assert calls["n"] == 11 - 4  # 22 sequences in batches of 2; the 4 batches of the 2 whole shards are skipped
    assert shard_path(tmp_path / "resumed", 0).stat().st_mtime_ns == first_mtime
    assert len(resumed.shards) == len(full.shards) == 6 and resumed.n_sequences == full.n_sequences == 22
    for a, b in zip(full.shards, resumed.shards):
        da, db = load_file(str(a)), load_file(str(b))
        assert torch.equal(da["acts"], db["acts"]) and torch.equal(da["tokens"], db["tokens"])


def test_resume_refuses_other_settings_and_config_checks(tiny_model, small_corpus, tmp_path):
    collect_activations(tiny_model, _corpus(small_corpus, max_tokens=64), tmp_path / "c",
                        ActivationConfig(layer=1, batch_size=2, shard_sequences=2), progress=False)
    with pytest.raises(IclensError, match="layer"):
        collect_activations(tiny_model, _corpus(small_corpus, max_tokens=64), tmp_path / "c",
                            ActivationConfig(layer=0, batch_size=2, shard_sequences=2), progress=False)
    with pytest.raises(IclensError, match="multiple"):
        ActivationConfig(layer=1, batch_size=3, shard_sequences=4)
    with pytest.raises(IclensError, match="out of range"):
        collect_activations(tiny_model, _corpus(small_corpus), tmp_path / "d", ActivationConfig(layer=2), progress=False)
    with pytest.raises(IclensError, match="no activation cache"):
        ActivationStore(tmp_path / "nothing")


def test_larger_budget_extends_a_complete_cache(tiny_model, small_corpus, tmp_path):
    cfg = ActivationConfig(layer=1, batch_size=2, shard_sequences=4)
    small = collect_activations(tiny_model, _corpus(small_corpus, max_tokens=16 * 6), tmp_path / "c", cfg, progress=False)
    assert small.n_sequences == 6
    big = collect_activations(tiny_model, _corpus(small_corpus, max_tokens=16 * 10), tmp_path / "c", cfg, progress=False)
    ref = collect_activations(tiny_model, _corpus(small_corpus, max_tokens=16 * 10), tmp_path / "ref", cfg, progress=False)
    assert big.n_sequences == 10
    assert all(torch.equal(load_file(str(a))["acts"], load_file(str(b))["acts"]) for a, b in zip(big.shards, ref.shards))


def test_an_exhausted_corpus_is_not_run_again(tiny_model, tmp_path):
    from ft_testkit import write_corpus

    corpus = _corpus(write_corpus(tmp_path / "c.txt", n_lines=10), max_tokens=10_000)  # 150 words: 10 sequences of BOS + 15
    cfg = ActivationConfig(layer=1, batch_size=2, shard_sequences=4)
    first = collect_activations(tiny_model, corpus, tmp_path / "acts", cfg, progress=False)
    assert first.n_sequences == 10 and first.meta["exhausted"]
    calls = []
    with tiny_model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: calls.append(1))]):
        again = collect_activations(tiny_model, corpus, tmp_path / "acts", cfg, progress=False)
    assert not calls and again.n_sequences == 10
