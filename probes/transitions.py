"""Loss by token transition (Zhang, Lin & Li 2025, "memory consolidation").

The paper argues that training loss is dominated by predicting the *content* token
that follows a *function* token. Given per-token next-token losses on a corpus, every
prediction (read token t at position p -> predict token t' at p+1) falls into one of
four transitions by the types of t and t':

    function->function, function->content, content->function, content->content

For each we report the number of predictions, their share of all predictions, the
mean loss, and the share of the *total* loss they carry. The prediction made at the
BOS position (no context yet) is left out when the sequences start with BOS.

`per_token_loss` computes the losses of a hooked model batch by batch (for Gemma,
keep the batch small: the logits are batch x pos x 262k floats). `transition_stats`
is pure and works on losses from anywhere, e.g. a toy model over training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm

TRANSITIONS = ("function->function", "function->content", "content->function", "content->content")


@torch.no_grad()
def per_token_loss(model, tokens: Int[torch.Tensor, "batch pos"], *, batch_size: int = 4,
                   progress: bool = False) -> Float[torch.Tensor, "batch pos_minus_1"]:
    """Cross-entropy of predicting tokens[:, p+1] from tokens[:, :p+1], for every p (CPU float32)."""
    dev = next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(tokens), batch_size), desc="per-token loss", disable=not progress):
        toks = tokens[i:i + batch_size].to(dev)
        out.append(model(toks, return_type="loss", loss_per_token=True).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, tokens.shape[1] - 1)


@dataclass
class TransitionStats:
    """Per transition: count, token share, mean loss, share of total loss (dicts keyed by TRANSITIONS)."""

    count: dict[str, int]
    token_share: dict[str, float]
    mean_loss: dict[str, float]
    loss_share: dict[str, float]
    total_loss: float
    mean_loss_all: float


def transition_stats(tokens: Int[torch.Tensor, "batch pos"], losses: Float[torch.Tensor, "batch pos_minus_1"],
                     function_mask: Bool[torch.Tensor, " vocab"], *, skip_first: bool = True) -> TransitionStats:
    """Group next-token losses by (type of the token read -> type of the token predicted)."""
    fn = function_mask.to(tokens.device)[tokens]
    prev, nxt = fn[:, :-1], fn[:, 1:]
    losses = losses.double()
    if skip_first:
        prev, nxt, losses = prev[:, 1:], nxt[:, 1:], losses[:, 1:]
    total = float(losses.sum())
    n_all = losses.numel()
    out = {"count": {}, "token_share": {}, "mean_loss": {}, "loss_share": {}}
    for name in TRANSITIONS:
        a, b = name.split("->")
        mask = (prev == (a == "function")) & (nxt == (b == "function"))
        n = int(mask.sum())
        s = float(losses[mask].sum())
        out["count"][name] = n
        out["token_share"][name] = n / n_all if n_all else 0.0
        out["mean_loss"][name] = s / n if n else float("nan")
        out["loss_share"][name] = s / total if total else 0.0
    return TransitionStats(**out, total_loss=total, mean_loss_all=total / n_all if n_all else float("nan"))
