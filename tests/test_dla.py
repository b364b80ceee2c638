"""Frozen-norm direct logit attribution: head outputs add up to the layer output, norms reproduce logits."""

from __future__ import annotations

import pytest
import torch

from probes import dla


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_gpt2"])
def test_heads_sum_to_attention_output(fixture, request):
    model = request.getfixturevalue(fixture)
    toks = model.to_tokens("mary and john went to the store john gave a drink to")
    _, cache = model.run_with_cache(toks)
    for L in range(model.cfg.n_layers):
        heads = dla.head_outputs(cache[f"blocks.{L}.attn.hook_z"], model.W_O[L]).sum(2)
        b_O = model.b_O[L] if getattr(model, "b_O", None) is not None else 0.0
        torch.testing.assert_close(heads + b_O, cache[f"blocks.{L}.hook_attn_out"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_model", "tiny_gpt2"])
def test_frozen_final_norm_reproduces_logits(fixture, request):
    """Frozen at its own scale, the norm applied to the whole residual is the real norm (minus its bias)."""
    model = request.getfixturevalue(fixture)
    toks = model.to_tokens("the cat saw the dog and the bird")
    logits, cache = model.run_with_cache(toks)
    resid = cache["ln_final.hook_in"]
    normed = dla.frozen_norm(resid, resid, model.ln_final)
    bias = getattr(model.ln_final.original_component, "bias", None)
    if bias is not None:
        normed = normed + bias
    b_U = model.b_U if getattr(model, "b_U", None) is not None else 0.0
    torch.testing.assert_close(normed @ model.W_U + b_U, logits, atol=1e-4, rtol=1e-4)
