"""What the explorer pages show, as plain Python: no Streamlit here, so it is testable directly.

Each function takes a loaded model and the user's inputs and returns JSON-like
data (lists, floats, small NumPy arrays), which `apps.explorer.state` caches with
`st.cache_data`. The measurements themselves come from the library
(`probes.hooks.capture`, `probes.icl_score.per_token_loss`, `probes.prompts`,
`probes.induction.scan`); this module only checks the user's input and shapes the
output for tables and figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probes.errors import IclensError
from probes.hooks import capture
from probes.icl_score import per_token_loss

#: Longest prompt the explorer runs (tokens, BOS included). Attention maps of longer
#: prompts are unreadable and their patterns for every layer would not fit a browser.
DEFAULT_MAX_TOKENS = 512


def max_tokens() -> int:
    """The explorer's prompt cap: $ICLENS_EXPLORER_MAX_TOKENS, else 512."""
    raw = os.environ.get("ICLENS_EXPLORER_MAX_TOKENS", str(DEFAULT_MAX_TOKENS))
    try:
        return max(2, int(raw))
    except ValueError:
        return DEFAULT_MAX_TOKENS


def check_model_name(name: str) -> str:
    """The model name to load, stripped; IclensError for an empty name or a filesystem path.

    The explorer only reads under the folders it is given, so a typed model name may be
    an embedded/tiny model or a Hugging Face ``org/name`` id, never a local folder.
    """
    name = (name or "").strip()
    if not name:
        raise IclensError("no model name given: pick a model in the list or type a Hugging Face id such as org/name.")
    from probes.models import EMBEDDED, TINY

    if name in EMBEDDED or name in TINY:
        return name
    looks_like_path = name.startswith(("/", "~", ".")) or "\\" in name or ".." in name or name.count("/") > 1
    if looks_like_path or Path(name).exists():
        raise IclensError(f"{name!r} looks like a local folder; the explorer loads only embedded models and "
                          "Hugging Face ids (org/name): load local folders from Python with probes.models.load_model.")
    return name


def tokenize(model, prompt: str, limit: int | None = None) -> torch.Tensor:
    """[1, pos] token ids of `prompt` (with BOS when the model prepends one); IclensError when empty or too long."""
    if not prompt or not prompt.strip():
        raise IclensError("the prompt is empty: type some text in the prompt box.")
    tokens = model.to_tokens(prompt, truncate=False)  # to_tokens cuts at n_ctx by default: say so instead
    n_ctx = int(getattr(model.cfg, "n_ctx", 0) or 0)
    cap = min(n_ctx, limit or max_tokens()) if n_ctx else (limit or max_tokens())
    if tokens.shape[1] > cap:
        why = f"the model's context is {n_ctx} tokens" if n_ctx and cap == n_ctx else f"the explorer's limit is {cap} tokens"
        raise IclensError(f"the prompt has {tokens.shape[1]} tokens and {why}: shorten the prompt.")
    return tokens


def visible(token: str) -> str:
    """A token string with newlines and tabs written as escapes, so a table or axis shows them."""
    return str(token).replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def str_tokens(model, tokens: torch.Tensor) -> list[str]:
    return [visible(t) for t in model.to_str_tokens(tokens[0])]


def prompt_summary(model, prompt: str, k: int = 10) -> dict[str, Any]:
    """Tokens, next-token top-k and per-token loss for one prompt (one forward pass).

    Returns a dict with ``tokens`` (str list), ``ids`` (int list), ``topk`` (list of
    {rank, token, id, probability} for the token after the prompt), ``loss`` (list of
    {position, token, loss, probability}: the loss of predicting each token from the
    tokens before it; the first token has no prediction) and ``mean_loss``.
    """
    if not 1 <= k <= 100:
        raise IclensError("top-k must be between 1 and 100.")
    tokens = tokenize(model, prompt).to(_device(model))
    with torch.inference_mode():
        logits = model(tokens)
    probs = torch.softmax(logits[0, -1].float(), dim=-1)
    p, idx = probs.topk(min(k, probs.shape[0]))
    labels = str_tokens(model, tokens)
    top_labels = [visible(t) for t in model.to_str_tokens(idx.cpu())]
    loss = per_token_loss(logits, tokens)[0].cpu() if tokens.shape[1] > 1 else torch.zeros(0)
    return {
        "tokens": labels,
        "ids": tokens[0].tolist(),
        "topk": [{"rank": r + 1, "token": t, "id": int(i), "probability": float(q)}
                 for r, (t, i, q) in enumerate(zip(top_labels, idx.tolist(), p.tolist()))],
        "loss": [{"position": t + 1, "token": labels[t + 1], "loss": float(v), "probability": float(np.exp(-float(v)))}
                 for t, v in enumerate(loss.tolist())],
        "mean_loss": float(loss.mean()) if loss.numel() else float("nan"),
    }


def attention_patterns(model, prompt: str) -> dict[str, Any]:
    """Attention patterns of every layer and head on `prompt`: ``patterns`` [layer, head, q, k] float16, ``tokens``.

    One forward pass that records only the pattern hooks and stops after the last
    layer's pattern (no final MLP, no unembedding).
    """
    tokens = tokenize(model, prompt).to(_device(model))
    names = [f"blocks.{L}.attn.hook_pattern" for L in range(model.cfg.n_layers)]
    _, cache = capture(model, tokens, names, stop_at=names[-1],
                       transform=lambda name, act: act[0].to(torch.float16).cpu())
    return {"tokens": str_tokens(model, tokens), "patterns": np.stack([cache[n].numpy() for n in names])}


def repeated_example(model, layer: int, seq_len: int = 16, seed: int = 0) -> dict[str, Any]:
    """One [BOS] R R repeated-random-token prompt and every head's pattern at `layer` on it.

    Induction heads show a stripe `seq_len - 1` below the diagonal; previous-token heads
    the first sub-diagonal. Returns ``tokens`` (str list) and ``patterns`` [head, q, k].
    """
    from probes.prompts import repeated_random_tokens, token_pool

    if not 0 <= layer < model.cfg.n_layers:
        raise IclensError(f"layer {layer} does not exist: the model has layers 0..{model.cfg.n_layers - 1}.")
    pool = token_pool(model.tokenizer, model.cfg.d_vocab)
    tokens = repeated_random_tokens(pool, n_prompts=1, seq_len=seq_len, seed=seed).to(_device(model))
    name = f"blocks.{layer}.attn.hook_pattern"
    _, cache = capture(model, tokens, [name], stop_at=name, transform=lambda n, act: act[0].float().cpu())
    return {"tokens": str_tokens(model, tokens), "patterns": cache[name].numpy()}


def _device(model) -> torch.device:
    return next(model.parameters()).device
