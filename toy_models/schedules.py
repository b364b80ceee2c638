"""Training schedules: things called at every step that may reset parameters or optimiser state.

The training loop (`toy_models.train.train`) calls `schedule(step, model, optimizer)`
before drawing each batch; a schedule returns the names of what it reset (logged as
events) or None. Forgetting schedules (Chen et al. 2023 active forgetting; Anand et
al. 2024 temporary forgetting) are built on `reinit_parameters`, which draws the new
values from a generator seeded by (seed, step) so a resumed run resets to the same
values as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from probes.errors import IclensError


def reinit_parameters(model: nn.Module, names: Sequence[str], *, seed: int, step: int, std: float = 0.02,
                      optimizer: torch.optim.Optimizer | None = None, reset_optimizer_state: bool = False) -> list[str]:
    """Re-draw the named parameters N(0, std) (deterministic in seed, step); optionally clear their optimiser state.

    Returns the names reset. Unknown names raise IclensError listing the model's parameters.
    """
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise IclensError(f"unknown parameter(s) {missing}: valid names include {', '.join(list(params)[:12])} ...")
    gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
    with torch.no_grad():
        for n in names:
            p = params[n]
            p.copy_((torch.randn(p.shape, generator=gen) * std).to(p.device, p.dtype))
            if reset_optimizer_state and optimizer is not None and p in optimizer.state:
                optimizer.state[p].clear()
    return list(names)


class EveryK:
    """Reset `names` every `k` steps (step > 0) while step < `until` (None: forever).

    `EveryK(names, k)` is active forgetting; `EveryK(names, k, until=T)` temporary forgetting.
    """

    def __init__(self, names: Sequence[str], k: int, *, until: int | None = None, seed: int = 0, std: float = 0.02,
                 reset_optimizer_state: bool = False):
        if k < 1:
            raise IclensError(f"reset period k must be >= 1 (got {k}).")
        self.names, self.k, self.until, self.seed, self.std = list(names), k, until, seed, std
        self.reset_optimizer_state = reset_optimizer_state

    def __call__(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str] | None:
        if step == 0 or step % self.k or (self.until is not None and step >= self.until):
            return None
        return reinit_parameters(model, self.names, seed=self.seed, step=step, std=self.std, optimizer=optimizer,
                                 reset_optimizer_state=self.reset_optimizer_state)
