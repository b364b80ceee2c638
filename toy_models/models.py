"""Hooked toy transformers: GPT-2-style blocks on continuous or token inputs.

A `ToyTransformer` is a TransformerLens `HookedRootModule` whose hook names follow
the pretrained models (`blocks.L.attn.hook_pattern` [batch head q k],
`blocks.L.attn.hook_z` [batch pos head d_head], `blocks.L.hook_resid_pre/mid/post`,
`blocks.L.hook_attn_out`, `blocks.L.hook_mlp_out`, `hook_embed`, `hook_pos_embed`),
so `probes` and `circuits` run on it unchanged. It follows the GPT-2 block of
Radford et al. 2019 as used for in-context learning by Garg et al. 2022 ("What can
transformers learn in-context?"): a linear read-in of continuous tokens (or a token
embedding when `d_vocab` is set), learned absolute positions, pre-LayerNorm blocks
with causal multi-head attention and an optional GELU MLP (`attn_only`), a final
LayerNorm and a read-out (linear, or a small MLP head when `d_readout_hidden` > 0).

Which positions are read out is the task's business (linear regression reads the
x positions; classification reads the final token), so `forward` returns every
position. Blocks are reusable on their own: `TransformerBlock(cfg, layer)`.

When no hook sits on `hook_attn_scores`/`hook_pattern` the attention runs through
`F.scaled_dot_product_attention` (same numbers, fewer temporaries); as soon as a
hook is added (run_with_cache, patching) the explicit pattern is computed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from probes.errors import IclensError


@dataclass(kw_only=True)
class ToyConfig:
    """Shape of a toy transformer. `d_head` defaults to d_model // n_heads, `d_mlp` to 4 d_model.

    Set `d_in` for continuous inputs (a linear read-in) or `d_vocab` for token ids
    (an embedding `embed.W_E`, the thing forgetting schedules re-initialise).
    `positional="none"` drops the learned positions; `normalization="none"` drops
    every LayerNorm (the minimal networks of Reddy 2023 use none). `embed_std` is the
    initial scale of the token embedding (0: init_std); under pre-LN it sets how much a
    fresh token weighs against its position.
    """

    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 64
    d_head: int = 0
    d_mlp: int = 0
    n_ctx: int = 64
    d_in: int = 0
    d_vocab: int = 0
    d_out: int = 1
    attn_only: bool = False
    positional: str = "learned"
    normalization: str = "ln"
    d_readout_hidden: int = 0
    init_std: float = 0.02
    embed_std: float = 0.0
    causal: bool = True

    def __post_init__(self) -> None:
        if self.d_head == 0 and self.n_heads > 0:
            self.d_head = self.d_model // self.n_heads
        if self.d_mlp == 0:
            self.d_mlp = 4 * self.d_model
        for name in ("n_layers", "n_heads", "d_model", "d_head", "n_ctx", "d_out"):
            if getattr(self, name) < 1:
                raise IclensError(f"ToyConfig.{name} must be >= 1 (got {getattr(self, name)}).")
        if (self.d_in > 0) == (self.d_vocab > 0):
            raise IclensError("ToyConfig: set exactly one of d_in (continuous inputs) or d_vocab (token ids).")
        if self.positional not in ("learned", "none"):
            raise IclensError(f"ToyConfig.positional must be 'learned' or 'none' (got {self.positional!r}).")
        if self.normalization not in ("ln", "none"):
            raise IclensError(f"ToyConfig.normalization must be 'ln' or 'none' (got {self.normalization!r}).")
        if self.init_std <= 0 or self.embed_std < 0:
            raise IclensError(f"ToyConfig.init_std must be > 0 and embed_std >= 0 (got {self.init_std}, "
                              f"{self.embed_std}).")
        if self.embed_std == 0:
            self.embed_std = self.init_std

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _has_hooks(hp: HookPoint) -> bool:
    return bool(hp._forward_hooks or hp._backward_hooks or hp.fwd_hooks or hp.bwd_hooks)


class LayerNorm(nn.Module):
    """LayerNorm with a hook on the normalisation scale (as in TransformerLens), or the identity."""

    def __init__(self, d: int, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        if enabled:
            self.w = nn.Parameter(torch.ones(d))
            self.b = nn.Parameter(torch.zeros(d))
        self.hook_scale = HookPoint()

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        if not self.enabled:
            return x
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt())
        return x / scale * self.w + self.b


class Attention(nn.Module):
    """Causal multi-head attention with TransformerLens-shaped weights W_Q/W_K/W_V [head d_model d_head], W_O [head d_head d_model]."""

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, d, dh))
        self.W_K = nn.Parameter(torch.empty(h, d, dh))
        self.W_V = nn.Parameter(torch.empty(h, d, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, d))
        self.b_Q = nn.Parameter(torch.zeros(h, dh))
        self.b_K = nn.Parameter(torch.zeros(h, dh))
        self.b_V = nn.Parameter(torch.zeros(h, dh))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.hook_q = HookPoint()  # [batch pos head d_head]
        self.hook_k = HookPoint()
        self.hook_v = HookPoint()
        self.hook_attn_scores = HookPoint()  # [batch head q k]
        self.hook_pattern = HookPoint()  # [batch head q k]
        self.hook_z = HookPoint()  # [batch pos head d_head]
        self.register_buffer("mask", torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool)), persistent=False)

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        n = x.shape[1]
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x, self.W_V) + self.b_V)
        if _has_hooks(self.hook_attn_scores) or _has_hooks(self.hook_pattern):
            scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / math.sqrt(self.cfg.d_head)
            if self.cfg.causal:
                scores = scores.masked_fill(~self.mask[:n, :n], float("-inf"))
            scores = self.hook_attn_scores(scores)
            pattern = self.hook_pattern(scores.softmax(-1))
            z = torch.einsum("bhqk,bkhe->bqhe", pattern, v)
        else:  # fast path, numerically the same softmax(QK^T/sqrt(d_head)) V
            z = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=self.cfg.causal).transpose(1, 2)
        z = self.hook_z(z)
        return torch.einsum("bphe,hed->bpd", z, self.W_O) + self.b_O


class MLP(nn.Module):
    """GELU MLP, hooks `hook_pre` and `hook_post` [batch pos d_mlp]."""

    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        pre = self.hook_pre(x @ self.W_in + self.b_in)
        return self.hook_post(F.gelu(pre)) @ self.W_out + self.b_out


class TransformerBlock(nn.Module):
    """Pre-LN residual block: resid_mid = resid_pre + attn(ln1(resid_pre)); resid_post = resid_mid + mlp(ln2(resid_mid))."""

    def __init__(self, cfg: ToyConfig, layer: int):
        super().__init__()
        self.cfg, self.layer = cfg, layer
        ln = cfg.normalization == "ln"
        self.ln1 = LayerNorm(cfg.d_model, ln)
        self.attn = Attention(cfg)
        self.hook_resid_pre = HookPoint()
        self.hook_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.hook_resid_post = HookPoint()
        if not cfg.attn_only:
            self.ln2 = LayerNorm(cfg.d_model, ln)
            self.mlp = MLP(cfg.d_model, cfg.d_mlp)
            self.hook_mlp_out = HookPoint()

    def forward(self, resid: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        resid = self.hook_resid_pre(resid)
        resid = self.hook_resid_mid(resid + self.hook_attn_out(self.attn(self.ln1(resid))))
        if not self.cfg.attn_only:
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Embed(nn.Module):
    """Token embedding W_E [d_vocab d_model] (token-id inputs)."""

    def __init__(self, d_vocab: int, d_model: int):
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))

    def forward(self, tokens: Int[torch.Tensor, "batch pos"]) -> Float[torch.Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


class ReadIn(nn.Module):
    """Linear read-in of continuous tokens, W_in [d_in d_model]."""

    def __init__(self, d_in: int, d_model: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(d_in, d_model))
        self.b_in = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Float[torch.Tensor, "batch pos d_in"]) -> Float[torch.Tensor, "batch pos d_model"]:
        return x @ self.W_in + self.b_in


class ReadOut(nn.Module):
    """Linear read-out, or a one-hidden-layer ReLU MLP head when d_hidden > 0."""

    def __init__(self, d_model: int, d_out: int, d_hidden: int = 0):
        super().__init__()
        self.hidden = nn.Linear(d_model, d_hidden) if d_hidden > 0 else None
        self.out = nn.Linear(d_hidden if d_hidden > 0 else d_model, d_out)

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_out"]:
        if self.hidden is not None:
            x = F.relu(self.hidden(x))
        return self.out(x)


class ToyTransformer(HookedRootModule):
    """GPT-2-style hooked toy transformer; `forward` maps inputs to outputs at every position.

    Args of `forward`: continuous tokens [batch pos d_in] (float) when cfg.d_in > 0,
    token ids [batch pos] (long) when cfg.d_vocab > 0. Returns [batch pos d_out].
    `stop_at_layer=L` returns the residual stream before block L instead.
    """

    def __init__(self, cfg: ToyConfig, *, seed: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg.d_vocab, cfg.d_model) if cfg.d_vocab else None
        self.read_in = ReadIn(cfg.d_in, cfg.d_model) if cfg.d_in else None
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model)) if cfg.positional == "learned" else None
        self.hook_embed = HookPoint()
        self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList([TransformerBlock(cfg, i) for i in range(cfg.n_layers)])
        self.ln_final = LayerNorm(cfg.d_model, cfg.normalization == "ln")
        self.read_out = ReadOut(cfg.d_model, cfg.d_out, cfg.d_readout_hidden)
        self.init_weights(seed)
        self.setup()

    def init_weights(self, seed: int | None = None) -> None:
        """GPT-2 initialisation: N(0, init_std) weights (token embedding N(0, embed_std)), output projections scaled
        by 1/sqrt(2 n_layers)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.cfg.init_std
        with torch.no_grad():
            for name, p in self.named_parameters():
                module = self.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self
                if isinstance(module, LayerNorm):
                    p.fill_(1.0 if name.endswith(".w") else 0.0)
                elif p.ndim == 1 or name.endswith("bias") or name.rsplit(".", 1)[-1].startswith("b_"):
                    p.zero_()
                else:
                    s = std / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("W_O", "W_out")) else std
                    s = self.cfg.embed_std if name == "embed.W_E" else s
                    p.copy_(torch.randn(p.shape, generator=gen) * s)

    def forward(self, inputs: torch.Tensor, *, stop_at_layer: int | None = None) -> torch.Tensor:
        n = inputs.shape[1]
        if n > self.cfg.n_ctx:
            raise IclensError(f"sequence of {n} positions exceeds the model's context n_ctx={self.cfg.n_ctx}: "
                              "use fewer in-context examples or a model with a larger n_ctx.")
        x = self.embed(inputs) if self.embed is not None else self.read_in(inputs)
        resid = self.hook_embed(x)
        if self.W_pos is not None:
            resid = resid + self.hook_pos_embed(self.W_pos[:n].unsqueeze(0).expand(inputs.shape[0], -1, -1))
        for block in self.blocks[:stop_at_layer]:
            resid = block(resid)
        if stop_at_layer is not None:
            return resid
        return self.read_out(self.ln_final(resid))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
