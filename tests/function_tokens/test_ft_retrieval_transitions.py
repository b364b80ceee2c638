"""Memory retrieval (ablation + attribution) against independent computations; loss by transition by hand."""

from __future__ import annotations

import pytest
import torch

from probes.activations import ActivationConfig, collect_activations
from probes.corpus import CorpusConfig
from probes.errors import IclensError
from probes.function_tokens import function_token_mask
from probes.memory_retrieval import RetrievalConfig, memory_retrieval, sample_positions
from probes.sae import SAEConfig, train_sae
from probes.transitions import TRANSITIONS, per_token_loss, transition_stats


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    from ft_testkit import write_corpus

    folder = tmp_path_factory.mktemp("retr")
    corpus = write_corpus(folder / "c.txt", n_lines=60)
    store = collect_activations(tiny_model, CorpusConfig(source=str(corpus), seq_len=24), folder / "acts",
                                ActivationConfig(layer=1, batch_size=4, shard_sequences=8), progress=False)
    sae, _ = train_sae(store, SAEConfig(d_in=32, expansion=4, k=4, epochs=3, batch_size=128), progress=False)
    return store, sae, function_token_mask(tiny_model.tokenizer)


def _logp_next(model, toks, row, pos, edit=None):
    """Independent recomputation: one sequence, optional subtraction at (pos) in blocks.1.hook_resid_pre."""
    def hook(x, hook):
        if edit is not None:
            x = x.clone()
            x[0, pos] -= edit
        return x

    with torch.no_grad(), model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", hook)]):
        logits = model(toks[row:row + 1, : pos + 2])
    return torch.log_softmax(logits[0, pos], -1)[toks[row, pos + 1]]


def test_ablation_and_attribution_match_independent_computations(tiny_model, setup, clean_hooks):
    store, sae, fmask = setup
    toks = store.sequences(12)
    cfg = RetrievalConfig(n_positions=6, top_m=3, batch_size=4, min_pos=4)
    res = memory_retrieval(tiny_model, sae, 1, toks, fmask, cfg)
    pos = sample_positions(toks, fmask, cfg)
    assert res.groups["function"].n == res.groups["content"].n == 6
    assert all(bool(fmask[toks[r, p]]) for r, p in zip(*pos["function"]))
    assert not any(bool(fmask[toks[r, p]]) for r, p in zip(*pos["content"]))
    dirs = sae.feature_directions()
    for group in ("function", "content"):
        for j in (0, 5):
            r, p = pos[group][0][j], pos[group][1][j]
            _, cache = tiny_model.run_with_cache(toks[r:r + 1, : p + 2], names_filter="blocks.1.hook_resid_pre")
            f = sae.encode(cache["blocks.1.hook_resid_pre"][0, p]).detach()
            top = f.topk(3).indices
            edit = (f[top, None] * dirs[top]).sum(0)
            want = _logp_next(tiny_model, toks, r, p, edit) - _logp_next(tiny_model, toks, r, p)
            assert res.groups[group].deltas[j] == pytest.approx(float(want), abs=1e-4)
    # first-order check: the attribution of the top features ~ -(effect of removing a small fraction eps of them)
    one_cfg = RetrievalConfig(n_positions=1, top_m=3, min_pos=4)
    row = toks[2:3]
    p = sample_positions(row, fmask, one_cfg)["function"][1][0]
    _, cache = tiny_model.run_with_cache(row[:, : p + 2], names_filter="blocks.1.hook_resid_pre")
    f = sae.encode(cache["blocks.1.hook_resid_pre"][0, p]).detach()
    top = f.topk(3).indices
    edit = (f[top, None] * dirs[top]).sum(0)
    eps = 1e-2
    fd = -(_logp_next(tiny_model, row, 0, p, eps * edit) - _logp_next(tiny_model, row, 0, p)) / eps
    one = memory_retrieval(tiny_model, sae, 1, row, fmask, one_cfg)
    assert one.groups["function"].attribution_top_m == pytest.approx(float(fd), rel=0.05, abs=1e-4)
    assert abs(float(fd)) > 1e-4
    assert clean_hooks(tiny_model)


def test_retrieval_needs_both_kinds(tiny_model, setup):
    store, sae, fmask = setup
    with pytest.raises(IclensError, match="both function and content"):
        memory_retrieval(tiny_model, sae, 1, store.sequences(4), torch.zeros_like(fmask), RetrievalConfig(n_positions=2))


def test_transition_stats_by_hand(tiny_model):
    tok = tiny_model.tokenizer
    fmask = function_token_mask(tok)
    toks = torch.tensor([tok.convert_tokens_to_ids("<bos> the cat . dog dog".split())])
    losses = torch.tensor([[9.0, 1.0, 2.0, 3.0, 4.0]])  # predictions of: the, cat, ., dog, dog
    s = transition_stats(toks, losses, fmask)  # the BOS->the prediction is skipped
    assert s.count == {"function->function": 0, "function->content": 2, "content->function": 1, "content->content": 1}
    assert s.loss_share["function->content"] == pytest.approx((1 + 3) / 10)
    assert s.mean_loss["content->content"] == pytest.approx(4.0) and s.total_loss == pytest.approx(10.0)
    assert sum(s.token_share.values()) == pytest.approx(1.0) and set(s.count) == set(TRANSITIONS)
    assert transition_stats(toks, losses, fmask, skip_first=False).count["function->function"] == 1


def test_per_token_loss_matches_cross_entropy(tiny_model, setup):
    store, _, _ = setup
    toks = store.sequences(5)
    got = per_token_loss(tiny_model, toks, batch_size=2)
    logits = tiny_model(toks)
    want = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), toks[:, 1:].flatten(), reduction="none")
    torch.testing.assert_close(got, want.view(5, -1).detach(), rtol=1e-4, atol=1e-5)
