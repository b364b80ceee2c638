"""The embedded models: the scan's top induction heads match an independent computation."""

from __future__ import annotations

import pytest
import torch

from probes import induction
from probes.models import embedded_cache_dir, load_model
from probes.prompts import repeated_random_tokens, token_pool

pytestmark = pytest.mark.embedded


@pytest.mark.parametrize("name", ["gemma-3-270m", "smollm2-135m"])
def test_induction_heads_match_raw_attention(name, request):
    model = request.getfixturevalue("gemma") if name == "gemma-3-270m" else load_model(name, device="cpu")
    res = induction.scan(model, n_prompts=4, seq_len=32, seed=0)
    # Independent: transformers' own eager attention weights, no TransformerLens hooks.
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(embedded_cache_dir(name), attn_implementation="eager")
    pool = token_pool(model.tokenizer, model.cfg.d_vocab)
    toks = repeated_random_tokens(pool, n_prompts=4, seq_len=32, seed=0)
    with torch.no_grad():
        att = torch.stack(hf(toks, output_attentions=True).attentions, 1)  # [batch layer head q k]
    q = torch.arange(1 + 32, toks.shape[1])
    ind = att[..., q, q - 31].mean((0, -1))
    order = ind.flatten().argsort(descending=True)[:3].tolist()
    independent = [(i // model.cfg.n_heads, i % model.cfg.n_heads) for i in order]
    assert [h[:2] for h in res.top("induction", 3)] == independent
    assert res.top("induction", 1)[0][2] > 0.5
    assert res.second_half_loss < 0.25 * res.first_half_loss
