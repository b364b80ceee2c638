"""Test kit for tests/circuits: a hand-built 2-layer attention-only HookedRootModule whose circuit is known by construction.

Residual stream subspaces (d_model = 4 * V + P): token one-hot | position one-hot |
"moved" token | "out" token | junk.

- L0H0 (mover): every query attends to position 1 (positional QK), copies that
  token (V) into the "moved" subspace (O).
- L1H1 (reader): every query attends to itself via the last-position key, reads
  "moved" (V) and writes it to "out" (O); the unembedding reads "out" only.
- every other head attends uniformly and writes token content into "junk", which
  nothing reads.

So the last-position logits are the one-hot of the token at position 1, the
circuit is exactly {L0H0, L1H1} (V-composition), and since every attention
pattern depends only on positions the logits are linear in every hook_z and in
the residual stream: attribution patching must equal activation patching there.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from circuits.tasks import PatchTask

V, P, S = 8, 6, 40.0  # vocab, positions (= prompt length), attention sharpness


class _Attn(nn.Module):
    def __init__(self, d_model, n_heads, d_head):
        super().__init__()
        self.W_Q = nn.Parameter(torch.zeros(n_heads, d_model, d_head))
        self.W_K = nn.Parameter(torch.zeros(n_heads, d_model, d_head))
        self.W_V = nn.Parameter(torch.zeros(n_heads, d_model, d_head))
        self.W_O = nn.Parameter(torch.zeros(n_heads, d_head, d_model))
        for name in ("hook_q", "hook_k", "hook_v", "hook_pattern", "hook_z"):
            setattr(self, name, HookPoint())

    def forward(self, x):
        q = self.hook_q(torch.einsum("bpm,hmd->bphd", x, self.W_Q))
        k = self.hook_k(torch.einsum("bpm,hmd->bphd", x, self.W_K))
        v = self.hook_v(torch.einsum("bpm,hmd->bphd", x, self.W_V))
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        n = x.shape[1]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return torch.einsum("bqhd,hdm->bqm", z, self.W_O)


class _Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.attn = _Attn(cfg.d_model, cfg.n_heads, cfg.d_head)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()

    def forward(self, x):
        x = self.hook_resid_pre(x)
        return self.hook_resid_post(x + self.hook_attn_out(self.attn(x)))


class HandBuilt(HookedRootModule):
    def __init__(self):
        super().__init__()
        self.cfg = SimpleNamespace(n_layers=2, n_heads=4, d_head=V, d_vocab=V, n_ctx=P, d_model=4 * V + P, device="cpu")
        tok, pos, moved, out, junk = 0, V, V + P, 2 * V + P, 3 * V + P
        self.W_E = nn.Parameter(torch.zeros(V, self.cfg.d_model))
        self.W_pos = nn.Parameter(torch.zeros(P, self.cfg.d_model))
        self.W_U = nn.Parameter(torch.zeros(self.cfg.d_model, V))
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList([_Block(self.cfg) for _ in range(2)])
        with torch.no_grad():
            self.W_E[:, tok:tok + V] = torch.eye(V)
            self.W_pos[:, pos:pos + P] = torch.eye(P)
            self.W_U[out:out + V] = torch.eye(V)
            for layer, (h_key_pos, src, dst) in enumerate([(1, tok, moved), (P - 1, moved, out)]):
                a = self.blocks[layer].attn
                h = layer  # circuit heads: L0H0 and L1H1
                a.W_Q[h, pos:pos + P, 0] = S
                a.W_K[h, pos + h_key_pos, 0] = 1.0
                a.W_V[h, src:src + V] = torch.eye(V)
                a.W_O[h, :, dst:dst + V] = torch.eye(V)
                for other in range(4):
                    if other != h:  # uniform attention, token content into junk
                        a.W_V[other, tok:tok + V] = torch.eye(V)
                        a.W_O[other, :, junk:junk + V] = torch.eye(V)
        self.setup()

    def forward(self, tokens):
        x = self.hook_embed(self.W_E[tokens] + self.W_pos[: tokens.shape[1]])
        for b in self.blocks:
            x = b(x)
        return x @ self.W_U


def handbuilt_task(n: int = 12, seed: int = 0) -> PatchTask:
    """Clean: [bos, t, ...]; corrupted: position 1 replaced; answer t, wrong the replacement."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.randint(1, V, (n, P), generator=g)
    clean[:, 0] = 0
    corrupted = clean.clone()
    corrupted[:, 1] = (clean[:, 1] + torch.randint(1, V - 1, (n,), generator=g) - 1) % (V - 1) + 1
    assert (corrupted[:, 1] != clean[:, 1]).all()
    return PatchTask("handbuilt", clean, corrupted, clean[:, 1].clone(), corrupted[:, 1].clone(),
                     str_tokens=[f"t{i}" for i in range(P)])


def assert_no_hooks(model) -> None:
    """Every HookPoint of `model` is free of forward and backward hooks."""
    for name, hp in model.hook_dict.items():
        assert not hp._forward_hooks and not hp._backward_hooks and not hp.fwd_hooks and not hp.bwd_hooks, name
