"""What the training loop needs from a task family (Garg et al. 2022's `tasks.py` split).

A task samples a batch of training sequences from a seeded `torch.Generator`
(CPU, so a run is reproducible on any device and the generator's state can be
checkpointed) and scores a model on it. The loop in `toy_models.train` calls only
these two methods, so a new family (classification, part-of-speech, ...) plugs in
by implementing them and registering itself (`tasks.registry.register_task`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


@runtime_checkable
class Task(Protocol):
    """The protocol every task family implements."""

    task_name: str

    def sample(self, batch_size: int, generator: torch.Generator, *, step: int = 0) -> Batch:
        """A batch of training sequences (CPU tensors). `step` lets a curriculum grow the task."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar training loss of `model` on `batch` (tensors already on the model's device)."""
        ...

    def config_dict(self) -> dict[str, Any]:
        """The task's config as plain JSON types (saved beside checkpoints, compared on resume)."""
        ...
