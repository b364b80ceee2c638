"""Scoped activation capture: only the named hooks, optional early stop, never leaves hooks behind.

`capture(model, tokens, names, stop_at=...)` runs one forward pass with forward
hooks on exactly the hook points a metric reads (DESIGN.md: cache only what the
metric needs). With `stop_at`, the pass ends as soon as that hook point has
fired: e.g. stopping at the last layer's `hook_pattern` skips the MLPs of that
layer, the final norm and the unembedding (for Gemma 3, a 640 x 262k matmul per
token, more than half the forward cost).

Hooks are added inside `model.hooks(...)` and removed in its `finally`, so an
exception (a bad shape, Ctrl-C) leaves the model clean; `active_hooks(model)`
lists any hook still attached, for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from probes.errors import IclensError


class _StopForward(Exception):
    """Raised from a hook to end a forward pass early; caught by `capture`."""


def hook_names(model) -> list[str]:
    return list(model.hook_dict.keys())


def check_hook_names(model, names: Iterable[str]) -> None:
    """Raise IclensError naming close matches when a hook name is not on the model."""
    import difflib

    have = model.hook_dict
    for name in names:
        if name not in have:
            close = difflib.get_close_matches(name, list(have), n=4)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise IclensError(f"the model has no hook point {name!r}{hint}")


def active_hooks(model) -> list[str]:
    """Names of hook points that still have a forward or backward hook attached."""
    out = []
    for name, hp in model.hook_dict.items():
        if getattr(hp, "fwd_hooks", None) or getattr(hp, "bwd_hooks", None) or hp._forward_hooks or hp._backward_hooks:
            out.append(name)
    return out


def capture(
    model,
    tokens: torch.Tensor,
    names: Iterable[str],
    *,
    stop_at: str | None = None,
    transform: Callable[[str, torch.Tensor], Any] | None = None,
) -> tuple[torch.Tensor | None, dict[str, Any]]:
    """One forward pass caching the activations at `names` (detached).

    Args:
        model: a TransformerBridge or toy HookedRootModule.
        tokens: [batch, pos] token ids (or whatever the model's forward takes).
        names: hook point names to record.
        stop_at: a hook point name; the forward ends right after it fires, and the
            returned logits are None. Use the last hook a metric needs.
        transform: optional `(name, activation) -> smaller tensor` applied before
            storing, to keep only what a metric reads (e.g. a few diagonals).
    Returns:
        (logits or None, {name: activation}).
    """
    names = list(dict.fromkeys(names))
    check_hook_names(model, names + ([stop_at] if stop_at else []))
    store: dict[str, Any] = {}

    # Aliases (e.g. hook_z -> attn.o.hook_in) fire under their real name, so each
    # hook function is bound to the name the caller asked for.
    def saver(name: str):
        def save(act, hook):
            a = act.detach()
            store[name] = transform(name, a) if transform else a
            if name == stop_at:
                raise _StopForward
        return save

    def stop(act, hook):
        raise _StopForward

    fwd = [(n, saver(n)) for n in names]
    if stop_at and stop_at not in names:
        fwd.append((stop_at, stop))
    logits = None
    with torch.inference_mode(), model.hooks(fwd_hooks=fwd):
        try:
            logits = model(tokens)
        except _StopForward:
            logits = None
    return logits, store
