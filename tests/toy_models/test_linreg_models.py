"""ToyTransformer and LSA: hook contract, fast path = hooked path, causality, LSA exact form."""

import pytest
import torch

from probes.errors import IclensError
from toy_models.lsa import LinearSelfAttention, closed_form_gamma_inv, closed_form_isotropic
from toy_models.mechanism import hooks_clean
from toy_models.models import ToyConfig, ToyTransformer, TransformerBlock


def small(**kw):
    cfg = dict(n_layers=2, n_heads=2, d_model=16, d_in=3, n_ctx=12)
    cfg.update(kw)
    return ToyTransformer(ToyConfig(**cfg), seed=0)


def test_hook_contract_names_and_shapes():
    m = small()
    x = torch.randn(4, 10, 3)
    _, cache = m.run_with_cache(x)
    assert cache["blocks.1.attn.hook_pattern"].shape == (4, 2, 10, 10)
    assert cache["blocks.0.attn.hook_z"].shape == (4, 10, 2, 8)
    for name in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"):
        assert cache[f"blocks.0.{name}"].shape == (4, 10, 16)
    assert m.blocks[0].attn.W_O.shape == (2, 8, 16)
    assert (m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_model, m.cfg.d_head) == (2, 2, 16, 8)
    # attention rows are distributions and causal
    p = cache["blocks.0.attn.hook_pattern"]
    assert torch.allclose(p.sum(-1), torch.ones(4, 2, 10), atol=1e-5)
    assert p.triu(1).abs().max() == 0
    # residual bookkeeping: resid_post = resid_mid + mlp_out, resid_mid = resid_pre + attn_out
    b = "blocks.1."
    assert torch.allclose(cache[b + "hook_resid_mid"], cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"], atol=1e-6)
    assert torch.allclose(cache[b + "hook_resid_post"], cache[b + "hook_resid_mid"] + cache[b + "hook_mlp_out"], atol=1e-6)


def test_fast_attention_path_matches_explicit_pattern():
    m = small(n_layers=3)
    x = torch.randn(5, 12, 3)
    fast = m(x)
    with m.hooks(fwd_hooks=[(f"blocks.{L}.attn.hook_pattern", lambda a, hook: a) for L in range(3)]):
        slow = m(x)
    assert torch.allclose(fast, slow, atol=1e-5)
    assert hooks_clean(m)


def test_raising_hook_leaves_model_clean():
    m = small()

    def bad(act, hook):
        raise RuntimeError("probe failed")

    with pytest.raises(RuntimeError):
        with m.hooks(fwd_hooks=[("blocks.0.attn.hook_pattern", bad)]):
            m(torch.randn(1, 4, 3))
    assert hooks_clean(m)


def test_causal_outputs_ignore_the_future():
    m = small()
    x = torch.randn(2, 10, 3)
    y = x.clone()
    y[:, 6:] = torch.randn(2, 4, 3)
    assert torch.allclose(m(x)[:, :6], m(y)[:, :6], atol=1e-6)
    assert not torch.allclose(m(x)[:, 6:], m(y)[:, 6:], atol=1e-4)


def test_attn_only_tokens_and_readout_head_variants():
    m = ToyTransformer(ToyConfig(n_layers=2, n_heads=1, d_model=16, d_vocab=11, n_ctx=9, d_out=4, attn_only=True,
                                 normalization="none", d_readout_hidden=8), seed=1)
    assert not hasattr(m.blocks[0], "mlp") and "blocks.0.hook_mlp_out" not in m.hook_dict
    out = m(torch.randint(0, 11, (3, 9)))
    assert out.shape == (3, 9, 4)
    assert m.embed.W_E.shape == (11, 16)
    # blocks are usable on their own
    blk = TransformerBlock(m.cfg, 0)
    assert blk(torch.randn(2, 5, 16)).shape == (2, 5, 16)


def test_seeded_init_and_bad_configs():
    a, b = small(), small()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(IclensError, match="exactly one"):
        ToyConfig(d_in=3, d_vocab=5)
    with pytest.raises(IclensError, match="n_layers"):
        ToyConfig(n_layers=0, d_in=3)
    with pytest.raises(IclensError, match="n_ctx"):
        small()(torch.randn(1, 13, 3))


def test_lsa_init_follows_zhang_frei_bartlett():
    m = LinearSelfAttention(4, sigma=0.3, seed=0)
    d = 4
    assert m.W_PV[d, d].item() == pytest.approx(0.3)
    assert m.W_PV[:, :d].abs().max() == 0 and m.W_PV[:d].abs().max() == 0
    assert m.W_KQ[d].abs().max() == 0 and m.W_KQ[:, d].abs().max() == 0
    tt = m.W_KQ.detach()[:d, :d] / 0.3
    assert torch.linalg.matrix_norm(tt).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(tt, tt.T, atol=1e-6) and torch.linalg.eigvalsh(tt).min() > -1e-6  # Theta Theta^T is PSD


def test_lsa_predict_equals_exact_form_at_every_prefix():
    torch.manual_seed(0)
    m = LinearSelfAttention(3, seed=1)
    with torch.no_grad():  # generic weights, not just the init's block structure
        m.W_PV.copy_(torch.randn(4, 4))
        m.W_KQ.copy_(torch.randn(4, 4))
    xs, ys = torch.randn(2, 7, 3), torch.randn(2, 7)
    pred = m.predict(xs, ys)
    for k in range(1, 7):
        E = m.embed(xs[:, : k + 1], ys[:, : k + 1])
        f = m(E)
        assert torch.allclose(pred[:, k], f[:, 3, k], atol=1e-4)
        # and f(E) by the paper's formula with the mask matrix M
        M = torch.diag(torch.tensor([1.0] * k + [0.0]))
        ref = E + m.W_PV @ E @ M @ E.transpose(1, 2) @ m.W_KQ @ E / k
        assert torch.allclose(f, ref, atol=1e-4)


def test_closed_form_values():
    ref = closed_form_isotropic(5, 20)
    assert ref["scale"] == pytest.approx(0.769, abs=5e-4)
    assert ref["test_error"] == pytest.approx(30 / 26)
    lam = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    g = closed_form_gamma_inv(lam, 10)
    expected = torch.diag(1 / ((1.1) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) + 0.6))
    assert torch.allclose(g, expected)
