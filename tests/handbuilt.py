"""A 2-layer GPT-2 whose heads are set by construction, booted as a TransformerBridge.

Residual stream (d_model 256, every vector orthogonal to the all-ones direction so
LayerNorm only rescales) has four 32-dim subspaces: A holds the token identity,
B the position (16 random frequencies as cos/sin pairs), C the previous token,
E the token two back.

- L0.H0 previous-token head: query = position rotated back one step, key =
  position, so it attends to t-1; it copies the key's token (A) into C.
- L0.H1 duplicate-token head: query and key both read A, so it attends to
  positions holding its own token (itself included).
- L0.H2 previous-previous-token head: like L0.H0 two steps back; copies into E.
- L1.H3 3-gram head: query reads (A, C) = (current, previous token), key reads
  (C, E) = (token before, token two before), so it attends to positions whose two
  preceding tokens match the last two tokens; zero output.
- L1.H2 induction head: query reads A (current token), key reads C (previous
  token), so it attends to the position after an earlier copy of the current
  token, and copies that position's token into A, strongly: the unembedding (tied
  to the token embeddings) then predicts it.
- Every other head has zero weights (uniform attention, zero output); MLPs are zero.
"""

from __future__ import annotations

import math

import torch

from probes.models import _tiny_tokenizer, cache_root

D, DH, K = 256, 64, 16
PREV, DUP, PREV2, IND, TRIGRAM = (0, 0), (0, 1), (0, 2), (1, 2), (1, 3)


def _basis(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(D, D, generator=g)
    m[:, 0] = 1.0  # first column spans the all-ones direction; the rest of Q is orthogonal to it
    q, _ = torch.linalg.qr(m)
    return q[:, 1:]


def build_handbuilt_induction_model(seed: int = 0, n_ctx: int = 160):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tiny_tokenizer(cache_root() / "tiny-tokenizer")
    V = len(tok)
    g = torch.Generator().manual_seed(seed + 1)
    Q = _basis(seed)
    A, B, C, E = Q[:, 0:32], Q[:, 32:64], Q[:, 64:96], Q[:, 96:128]
    u = torch.randn(V, 32, generator=g)
    u = u / u.norm(dim=1, keepdim=True)
    half = math.sqrt(D / 2)
    wte = half * u @ A.T  # [V, D]
    omega = torch.rand(K, generator=g) * (math.pi - 0.3) + 0.3
    t = torch.arange(n_ctx, dtype=torch.float32)[:, None]
    coords = torch.cat([torch.cos(omega * t), torch.sin(omega * t)], dim=1) / math.sqrt(K)  # unit norm
    wpe = half * coords @ B.T

    # Rotation taking the coords of position t to those of t-1.
    c, s = torch.cos(omega), torch.sin(omega)
    rot = torch.zeros(2 * K, 2 * K)
    idx = torch.arange(K)
    rot[idx, idx], rot[idx, idx + K] = c, s       # cos(w(t-1)) = cos(wt)c + sin(wt)s
    rot[idx + K, idx], rot[idx + K, idx + K] = -s, c  # sin(w(t-1)) = sin(wt)c - cos(wt)s

    cfg = GPT2Config(vocab_size=V, n_embd=D, n_layer=2, n_head=4, n_positions=n_ctx, bos_token_id=1, eos_token_id=2,
                     pad_token_id=0, layer_norm_epsilon=1e-6)
    cfg.architectures = ["GPT2LMHeadModel"]
    model = GPT2LMHeadModel(cfg)
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    sd["transformer.wte.weight"] = wte
    sd["lm_head.weight"] = wte
    sd["transformer.wpe.weight"] = wpe
    for name in ("ln_1", "ln_2"):
        for L in range(2):
            sd[f"transformer.h.{L}.{name}.weight"] = torch.ones(D)
    sd["transformer.ln_f.weight"] = torch.ones(D)

    def put(L, head, Wq, Wk, Wv, Wo):
        """Wq/Wk/Wv: [D, <=DH] read maps (x @ W); Wo: [<=DH, D] write map; zero-padded to DH."""
        Wq, Wk, Wv = (torch.nn.functional.pad(w, (0, DH - w.shape[1])) for w in (Wq, Wk, Wv))
        Wo = torch.nn.functional.pad(Wo, (0, 0, 0, DH - Wo.shape[0]))
        W = sd[f"transformer.h.{L}.attn.c_attn.weight"]  # [D, 3D]: q | k | v, heads contiguous
        sl = slice(head * DH, (head + 1) * DH)
        W[:, sl], W[:, D + head * DH : D + (head + 1) * DH], W[:, 2 * D + head * DH : 2 * D + (head + 1) * DH] = Wq, Wk, Wv
        sd[f"transformer.h.{L}.attn.c_proj.weight"][sl, :] = Wo

    put(*PREV, Wq=10.0 * B @ rot.T, Wk=B, Wv=A, Wo=C.T)
    put(*DUP, Wq=4.0 * A, Wk=A, Wv=torch.zeros(D, DH), Wo=torch.zeros(DH, D))
    put(*PREV2, Wq=10.0 * B @ (rot @ rot).T, Wk=B, Wv=A, Wo=E.T)
    put(*IND, Wq=12.0 * A, Wk=C, Wv=A, Wo=8.0 * A.T)
    put(*TRIGRAM, Wq=10.0 * torch.cat([A, C], 1), Wk=torch.cat([C, E], 1), Wv=torch.zeros(D, DH), Wo=torch.zeros(DH, D))
    model.load_state_dict(sd)
    model.eval()
    bridge = TransformerBridge.boot_transformers("gpt2-handbuilt", hf_model=model, tokenizer=tok, device="cpu")
    bridge.eval()
    bridge.cfg.model_name = "handbuilt-induction"
    return bridge
