"""In-context learning score: loss late in a context minus loss early in it (Olsson et al. 2022).

Olsson et al. define the ICL score as the loss at token 500 minus the loss at
token 50 of natural-text contexts; negative means the model predicts better with
more context. On [BOS] R R repeated random tokens the same quantity is sharp:
the first copy is unpredictable, the second is predictable only by reading the
context, so (second-half loss - first-half loss) measures induction directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int


def per_token_loss(
    logits: Float[torch.Tensor, "batch pos vocab"], tokens: Int[torch.Tensor, "batch pos"]
) -> Float[torch.Tensor, "batch pos_minus_1"]:
    """Cross-entropy of predicting tokens[:, t+1] from position t, in nats, float32."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def icl_score(
    loss: Float[torch.Tensor, "batch pos"], early: slice, late: slice
) -> tuple[float, float, float]:
    """(late loss - early loss, early loss, late loss), each a mean over prompts and positions."""
    e = loss[:, early].mean().item()
    lt = loss[:, late].mean().item()
    return lt - e, e, lt


def natural_text_icl_score(
    model, tokens: Int[torch.Tensor, "batch pos"], early: int = 50, late: int = 500, window: int = 10
) -> tuple[float, float, float]:
    """Olsson et al.'s ICL score on natural text: mean loss around token `late` minus around `early`.

    `tokens` must have more than late + window positions.
    """
    with torch.inference_mode():
        loss = per_token_loss(model(tokens), tokens)
    return icl_score(loss, slice(early, early + window), slice(late, late + window))
