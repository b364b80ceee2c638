"""SAE: a planted feature is recovered and linked to exactly its token; exact splice; save/load; clean hooks."""

from __future__ import annotations

import pytest
import torch

from probes.activations import ActivationConfig, collect_activations
from probes.corpus import CorpusConfig
from probes.errors import IclensError
from probes.feature_graph import build_graph, sae_batches
from probes.sae import SAEConfig, SparseAutoencoder, evaluate_sae, load_sae, save_sae, spliced_loss, train_sae


@pytest.fixture(scope="module")
def planted(tiny_model, tmp_path_factory):
    """Cache of layer-1 activations where a unit direction v (random magnitude 0.15-0.45, about 3x the
    residual norm) is added to the residual stream at, and only at, every position holding 'cat'."""
    from ft_testkit import write_corpus

    folder = tmp_path_factory.mktemp("planted")
    corpus = write_corpus(folder / "corpus.txt", n_lines=400)
    cat = tiny_model.tokenizer.convert_tokens_to_ids("cat")
    v = torch.randn(tiny_model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    v = v / v.norm()
    gen = torch.Generator().manual_seed(5)
    seen = {}

    def grab(ids, hook):
        seen["ids"] = ids
        return ids

    def plant(x, hook):
        a = 0.3 * (0.5 + torch.rand(x.shape[:2], generator=gen))
        return x + ((seen["ids"] == cat).to(x) * a).unsqueeze(-1) * v

    with tiny_model.hooks(fwd_hooks=[("embed.hook_in", grab), ("blocks.1.hook_resid_pre", plant)]):
        store = collect_activations(tiny_model, CorpusConfig(source=str(corpus), seq_len=32), folder / "acts",
                                    ActivationConfig(layer=1, batch_size=8, shard_sequences=32), progress=False)
    return store, v, cat


def test_planted_feature_is_recovered_and_linked_to_exactly_its_token(tiny_model, planted):
    store, v, cat = planted
    # k=2: one latent for the token's own embedding, one for the planted direction.
    sae, log = train_sae(store, SAEConfig(d_in=32, expansion=4, k=2, epochs=40, batch_size=256, lr=3e-3), progress=False)
    cos = sae.W_dec.detach() @ v
    best = int(cos.argmax())
    assert cos[best] > 0.95
    graph = build_graph(sae_batches(store, sae), vocab_size=tiny_model.cfg.d_vocab, threshold=1.0)
    assert graph.tokens_of(best) == [cat]
    assert best in graph.features_of(cat)
    assert log.fve[-1] > log.fve[0]
    stats = evaluate_sae(sae, store)
    assert stats.fve > 0.9 and stats.l0 == pytest.approx(2.0) and stats.n_alive + stats.n_dead == 128


def test_relu_sae_learns_and_l1_makes_it_sparse(planted):
    store, _, _ = planted
    kw = dict(d_in=32, expansion=2, kind="relu", epochs=6, batch_size=256, lr=3e-3)
    dense, _ = train_sae(store, SAEConfig(l1_coeff=0.0, **kw), progress=False)
    sparse, _ = train_sae(store, SAEConfig(l1_coeff=10.0, **kw), progress=False)
    s_dense, s_sparse = evaluate_sae(dense, store), evaluate_sae(sparse, store)
    assert s_dense.fve > 0.9
    assert s_sparse.l0 < 0.5 * s_dense.l0


def _exact_sae(d: int) -> SparseAutoencoder:
    """relu(x) - relu(-x) = x: a ReLU SAE that reconstructs every input exactly."""
    sae = SparseAutoencoder(SAEConfig(d_in=d, expansion=2, kind="relu"))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_exact_sae_splices_without_changing_the_loss(tiny_model, planted, clean_hooks):
    store, _, _ = planted
    sae = _exact_sae(32)
    assert evaluate_sae(sae, store, max_sequences=8).fve == pytest.approx(1.0, abs=1e-6)
    toks = store.sequences(4)
    mean = torch.zeros(32)
    out = spliced_loss(tiny_model, sae, 1, toks, mean_act=mean)
    assert out["spliced"] == pytest.approx(out["clean"], abs=1e-5)
    assert out["loss_recovered"] == pytest.approx(1.0, abs=1e-3)
    zero = spliced_loss(tiny_model, SparseAutoencoder(SAEConfig(d_in=32, expansion=2, kind="relu")), 1, toks)
    assert abs(zero["delta"]) > 1e-4  # a random SAE does change the loss: the splice is live
    assert clean_hooks(tiny_model)


def test_a_raising_splice_leaves_no_hook(tiny_model, planted, clean_hooks):
    store, _, _ = planted

    class Broken(SparseAutoencoder):
        def forward(self, x):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        spliced_loss(tiny_model, Broken(SAEConfig(d_in=32)), 1, store.sequences(2))
    assert clean_hooks(tiny_model)


def test_save_load_roundtrip_and_bad_config(planted, tmp_path):
    store, _, _ = planted
    sae, _ = train_sae(store, SAEConfig(d_in=32, expansion=2, k=4, epochs=1), progress=False)
    save_sae(sae, tmp_path / "sae", {"note": 1})
    back, info = load_sae(tmp_path / "sae")
    x, _ = next(store.iter_tokens())
    assert torch.equal(back(x), sae(x)) and info["note"] == 1
    with pytest.raises(IclensError):
        SAEConfig(d_in=32, kind="gated")
    with pytest.raises(IclensError):
        SAEConfig(d_in=4, expansion=2, k=9)
    with pytest.raises(IclensError, match="d_in"):
        train_sae(store, SAEConfig(d_in=16), progress=False)
    with pytest.raises(IclensError, match="no saved SAE"):
        load_sae(tmp_path / "none")
