"""Token-feature graph statistics against a hand count on a 10-sentence corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes.feature_graph import build_graph, coverage, graph_stats, power_law_fit
from probes.function_tokens import function_token_mask

SENTENCES = [
    "the cat saw a dog .", "the dog saw the bird .", "a bird saw the cat .", "the cat is red .", "the dog is big .",
    "a big red ball .", "the ball is in the park .", "mary saw the ball .", "john took the cup .", "the cup is on the tree .",
]
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def letter_features(word: str) -> torch.Tensor:
    """A rule-made 'SAE': feature i (a letter) fires with the letter's count in the word; feature 26 on punctuation."""
    f = torch.zeros(27)
    for ch in word:
        if ch in LETTERS:
            f[LETTERS.index(ch)] += 1
    if word in ".,":
        f[26] = 1
    return f


@pytest.fixture(scope="module")
def corpus(tiny_model):
    tok = tiny_model.tokenizer
    words = " ".join(SENTENCES).split()
    ids = torch.tensor(tok.convert_tokens_to_ids(words))
    acts = torch.stack([letter_features(w) for w in words])
    # two batches, to exercise accumulation across batches
    return tok, ids, acts, [(ids[:20], acts[:20]), (ids[20:], acts[20:])]


def test_degrees_and_frequencies_match_the_hand_count(corpus, tiny_model):
    tok, ids, acts, batches = corpus
    g = build_graph(batches, vocab_size=tiny_model.cfg.d_vocab)
    words = tok.convert_ids_to_tokens(g.token_ids.tolist())
    count = dict(zip(words, g.counts.tolist()))
    degree = dict(zip(words, g.degree.tolist()))
    assert words[:2] == ["the", "."] and set(words[2:4]) == {"saw", "is"}
    assert (count["the"], count["."], count["saw"], count["is"], count["cat"], count["ball"], count["tree"]) == (12, 10, 4, 4, 3, 3, 1)
    assert (degree["the"], degree["."], degree["saw"], degree["is"], degree["ball"], degree["mary"], degree["took"]) == (3, 1, 3, 2, 3, 4, 3)
    assert int(g.counts.sum()) == 57 and len(words) == 19
    # 21 distinct letters over the corpus + the punctuation feature; 'f', 'q', 'v', 'x', 'z' never fire
    assert int(g.alive.sum()) == 22
    assert coverage(g.edges, g.alive, (1, 2, 4)) == {1: 3 / 22, 2: 4 / 22, 4: 8 / 22}


def test_threshold_is_applied(corpus, tiny_model):
    tok, ids, acts, batches = corpus
    g = build_graph(batches, vocab_size=tiny_model.cfg.d_vocab, threshold=1.0)  # only letters seen twice in a word
    words = tok.convert_ids_to_tokens(g.token_ids.tolist())
    assert {w: d for w, d in zip(words, g.degree.tolist()) if d} == {"ball": 1, "took": 1, "tree": 1}


def test_function_content_split_matches_the_hand_count(corpus, tiny_model):
    tok, ids, acts, batches = corpus
    g = build_graph(batches, vocab_size=tiny_model.cfg.d_vocab)
    s = graph_stats(g, function_token_mask(tok), ks=(1, 2))
    fn = s.function_vs_content["function"]
    # function tokens here: the . a is in on -> letters t h e a i s n o + punctuation = 9 of 22
    assert fn["n_types"] == 6 and fn["alive_fraction_covered"] == pytest.approx(9 / 22)
    assert fn["mean_degree"] == pytest.approx((3 + 1 + 1 + 2 + 2 + 2) / 6)
    assert fn["occurrence_share"] == pytest.approx((12 + 10 + 3 + 4 + 1 + 1) / 57)
    assert s.function_vs_content["content"]["alive_fraction_covered"] == pytest.approx(21 / 22)
    assert s.coverage["function"][2] == pytest.approx(4 / 22) and s.coverage["content"][1] == pytest.approx(3 / 22)


def test_power_law_fit_recovers_an_exact_power_law():
    rank = np.arange(1, 200)
    fit = power_law_fit(rank, 300 * rank ** -0.7)
    assert fit["alpha"] == pytest.approx(0.7) and fit["log10_C"] == pytest.approx(np.log10(300)) and fit["r2"] == pytest.approx(1.0)
    assert fit["n"] == 199
    assert power_law_fit([1, 2], [0, 3])["n"] == 1


def test_tracked_feature_counts_and_firing_rates(corpus, tiny_model):
    tok, ids, acts, batches = corpus
    t = LETTERS.index("t")
    g = build_graph(batches, vocab_size=tiny_model.cfg.d_vocab, track=[t, 26])
    words = tok.convert_ids_to_tokens(g.token_ids.tolist())
    counts_t = dict(zip(words, g.tracked_counts[:, 0].tolist()))
    assert counts_t["the"] == 12 and counts_t["tree"] == 1 and counts_t["dog"] == 0
    assert sum(g.tracked_counts[:, 1].tolist()) == 10  # the punctuation feature fired on the 10 full stops
    spec = {tok.convert_ids_to_tokens(i): r for i, r in g.most_specific_tokens(t)}
    assert spec == {"the": 1.0, "cat": 1.0}  # tokens seen >= 3 times that contain a 't'
    with pytest.raises(ValueError, match="not tracked"):
        g.most_specific_tokens(0)
