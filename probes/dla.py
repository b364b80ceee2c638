"""Direct logit attribution (DLA) of attention heads to the correct next token.

A head's direct effect is its output z_h W_O^h carried straight to the logits,
with every normalisation it passes through frozen at the value it had on the
full forward pass (Elhage et al. 2021, "A Mathematical Framework for Transformer
Circuits"; TransformerLens `apply_ln_to_stack`). Frozen, a norm is linear, so the
head contributions of a layer add up exactly to that layer's attention output.

Norms handled: LayerNorm (centre, divide by the frozen std, multiply by the
weight), RMSNorm (divide by the frozen RMS, multiply by the weight), and Gemma's
RMSNorm (multiply by 1 + weight). Gemma 3's post-attention norm (`ln1_post`) sits
between the heads and the residual stream; it is frozen the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Float, Int


def norm_gain_eps(norm_bridge) -> tuple[torch.Tensor, float, bool]:
    """(elementwise gain, eps, centres?) of a bridged LayerNorm / RMSNorm module."""
    mod = getattr(norm_bridge, "original_component", norm_bridge)
    name = type(mod).__name__
    eps = float(getattr(mod, "variance_epsilon", getattr(mod, "eps", 1e-6)))
    w = mod.weight.detach().float()
    if "Gemma" in name:
        w = 1.0 + w
    centres = isinstance(mod, torch.nn.LayerNorm) or name.endswith("LayerNorm")
    return w, eps, centres


def frozen_norm(
    component: Float[torch.Tensor, "... d_model"], total: Float[torch.Tensor, "*lead d_model"], norm_bridge
) -> Float[torch.Tensor, "... d_model"]:
    """Apply `norm_bridge` to `component` with its scale frozen at the value computed from `total`.

    `total` broadcasts against `component` from the left (e.g. total [batch pos d],
    component [batch pos head d] after unsqueezing the head axis by the caller).
    Biases are not added: they belong to no single component.
    """
    gain, eps, centres = norm_gain_eps(norm_bridge)
    if centres:
        scale = (total.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
        component = component - component.mean(-1, keepdim=True)
    else:
        scale = (total.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    return component / scale * gain.to(component.device)


def head_outputs(
    z: Float[torch.Tensor, "batch pos head d_head"], W_O: Float[torch.Tensor, "head d_head d_model"]
) -> Float[torch.Tensor, "batch pos head d_model"]:
    """Each head's write into its layer's attention output (before any post-attention norm)."""
    return torch.einsum("bphd,hdm->bphm", z, W_O.to(z.dtype))


def names_needed(model) -> list[str]:
    """Hook points `head_dla` reads: every layer's z, any post-attention norm input, the final norm input."""
    names = [f"blocks.{L}.attn.hook_z" for L in range(model.cfg.n_layers)]
    if hasattr(model.blocks[0], "ln1_post"):
        names += [f"blocks.{L}.ln1_post.hook_in" for L in range(model.cfg.n_layers)]
    return names + ["ln_final.hook_in"]


def head_dla(
    model, cache: Mapping[str, Any], tokens: Int[torch.Tensor, "batch pos"], q_start: int,
    W_O: Float[torch.Tensor, "layer head d_head d_model"] | None = None,
) -> Float[torch.Tensor, "batch layer head"]:
    """Mean over query positions q >= q_start of each head's direct logit to tokens[:, q + 1].

    `W_O` may be passed in when calling per batch: on a bridge, `model.W_O` restacks
    every layer's weights on each access.
    """
    n_layers = model.cfg.n_layers
    q = torch.arange(q_start, tokens.shape[1] - 1)
    target = tokens[:, q + 1]  # [batch, nq]
    W_U = model.W_U.detach()
    u = W_U[:, target].permute(1, 2, 0).float()  # [batch, nq, d_model]
    resid_final = cache["ln_final.hook_in"][:, q].float()
    W_O = (model.W_O if W_O is None else W_O).detach()
    per_layer = []
    for L in range(n_layers):
        out = head_outputs(cache[f"blocks.{L}.attn.hook_z"][:, q].float(), W_O[L])  # [b nq h d]
        if f"blocks.{L}.ln1_post.hook_in" in cache:
            post_total = cache[f"blocks.{L}.ln1_post.hook_in"][:, q].float().unsqueeze(2)
            out = frozen_norm(out, post_total, model.blocks[L].ln1_post)
        out = frozen_norm(out, resid_final.unsqueeze(2), model.ln_final)
        per_layer.append(torch.einsum("bqhm,bqm->bh", out, u) / len(q))
    return torch.stack(per_layer, dim=1)
