"""The patching metric: logit difference, normalised so clean = 1 and corrupted = 0.

Wang et al. (2022) measure IOI by the logit difference between the right and the
wrong name; Heimersheim & Nanda ("How to use and interpret activation patching",
2024) recommend normalising it by the clean and corrupted baselines so a patching
result reads as "fraction of the clean behaviour restored":

    metric(logits) = (mean LD(logits) - LD_corrupted) / (LD_clean - LD_corrupted)

It is linear in the per-prompt logit differences, so it is differentiable (for
attribution patching) and its gradient is the same for every patched variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int

from probes.errors import IclensError


def logit_diff(logits: Float[torch.Tensor, "batch d_vocab"], answer: Int[torch.Tensor, " batch"],
               wrong: Int[torch.Tensor, " batch"]) -> Float[torch.Tensor, " batch"]:
    """Per-prompt logit(answer) - logit(wrong) from last-position logits."""
    return logits.gather(-1, answer[:, None])[:, 0] - logits.gather(-1, wrong[:, None])[:, 0]


@dataclass(frozen=True)
class NormalisedLogitDiff:
    """Mean logit difference mapped so the clean run scores 1 and the corrupted run 0."""

    clean_ld: float
    corrupted_ld: float

    def __post_init__(self) -> None:
        if abs(self.clean_ld - self.corrupted_ld) < 1e-6:
            raise IclensError(f"clean and corrupted logit differences are equal ({self.clean_ld:.4g}): the task does not "
                              "separate the two runs on this model; use another task or more prompts.")

    def __call__(self, logits: Float[torch.Tensor, "batch d_vocab"], answer: Int[torch.Tensor, " batch"],
                 wrong: Int[torch.Tensor, " batch"]) -> Float[torch.Tensor, ""]:
        ld = logit_diff(logits, answer, wrong).mean()
        return (ld - self.corrupted_ld) / (self.clean_ld - self.corrupted_ld)
