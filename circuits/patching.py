"""Activation patching: one generic batched core and small strategy functions.

Activation patching (Vig et al. 2020; Meng et al. 2022; Wang et al. 2022; see
Heimersheim & Nanda 2024 for practice) runs the model on one input while
overwriting chosen activations with the values they had on another input. The
default here is *denoising*: run the corrupted prompts and write in clean
activations; the normalised metric then reads "fraction of the clean behaviour
this component restores". ``direction="noise"`` does the reverse.

The core, `run_variants`, takes a list of *variants* - each a list of `Patch`es
(hook name, index into the activation, source key) - and evaluates many variants
in one forward pass: the target batch is repeated once per variant and each
hook writes its source values only into its own variant's rows. A full head
sweep of an 18 x 4 model is then a handful of forward passes instead of 72. The
strategy functions (`resid_sweep`, `head_sweep`, `head_pos_sweep`, `mlp_sweep`,
`pattern_sweep`, `value_sweep`) only build variant lists, in the spirit of
TransformerLens' ``generic_activation_patch`` + ``partial``.

It only uses hook names, so it works on a `TransformerBridge` and on any
`HookedRootModule` toy model alike.
"""

from __future__ import annotations

import difflib
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm

from circuits.metrics import NormalisedLogitDiff, logit_diff
from circuits.tasks import PatchTask
from probes.errors import IclensError


@dataclass(frozen=True)
class Patch:
    """Overwrite ``act[:, *index]`` at hook `hook` with ``sources[source or hook][:, *index]``.

    `index` addresses the dims after batch; ``None`` means "all" (e.g. ``(None, 3)``
    on ``hook_z`` [batch pos head d_head] is head 3 at every position).
    """

    hook: str
    index: tuple[int | None, ...] = ()
    source: str | None = None

    def key(self) -> str:
        return self.source or self.hook

    def slices(self) -> tuple:
        return (slice(None),) + tuple(slice(None) if i is None else i for i in self.index)


@dataclass
class Sweep:
    """What a strategy function returns: one variant per component, and how to lay results out."""

    name: str
    variants: list[list[Patch]]
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    hooks: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if int(np.prod(self.shape)) != len(self.variants):
            raise IclensError(f"sweep {self.name}: shape {self.shape} does not match {len(self.variants)} variants.")
        if not self.hooks:
            self.hooks = sorted({p.hook for v in self.variants for p in v})


def check_hook_names(model, names: Sequence[str]) -> None:
    """Raise IclensError naming the close matches when `model` has no hook point called `name`."""
    known = model.hook_dict
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=4, cutoff=0.6)
            hint = f"close matches: {', '.join(close)}" if close else "see model.hook_dict for the names"
            raise IclensError(f"model has no hook {name!r}; {hint}.")


def _last_pos_hook(x, hook):
    # Only the last position's logits are read: unembedding one position instead of all of them
    # is most of the forward pass on a 262k-token vocabulary.
    return x[:, -1:]


def last_logits(model, tokens: Int[torch.Tensor, "batch pos"], fwd_hooks: Sequence = ()) -> Float[torch.Tensor, "batch d_vocab"]:
    """Last-position logits of `model` on `tokens` with temporary `fwd_hooks` (removed even on error)."""
    hooks = list(fwd_hooks)
    if "unembed.hook_in" in model.hook_dict:
        hooks.append(("unembed.hook_in", _last_pos_hook))
    with model.hooks(fwd_hooks=hooks):
        return model(tokens)[:, -1]


def cache_hooks(model, tokens: Int[torch.Tensor, "batch pos"], names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Activations of `names` on `tokens` (detached), through temporary forward hooks."""
    check_hook_names(model, names)
    store: dict[str, torch.Tensor] = {}

    def make(name):
        def hook(x, hook):
            store[name] = x.detach().clone()
        return hook

    with torch.inference_mode():
        last_logits(model, tokens, [(n, make(n)) for n in names])
    return store


def run_variants(model, tokens: Int[torch.Tensor, "batch pos"], variants: Sequence[Sequence[Patch]],
                 sources: Mapping[str, torch.Tensor], score: Callable[[torch.Tensor], torch.Tensor], *,
                 max_batch: int = 256, record: Sequence[str] = (), progress: bool = False,
                 desc: str = "patching") -> tuple[Float[torch.Tensor, " variant"], dict[str, torch.Tensor]]:
    """Evaluate every variant (a list of patches applied together) on `tokens`, many per forward pass.

    Args:
        tokens: the run being patched, [batch pos].
        variants: each a list of `Patch`; an empty list is the unpatched run.
        sources: key -> activations [batch, ...] written into the patched slots.
        score: last-position logits [batch d_vocab] of one variant -> scalar.
        max_batch: sequences per forward pass (variants x prompts); lower it when memory is short.
        record: hook names whose (patched) activations to return, stacked [variant*batch, ...].
    Returns:
        (scores [n_variants], recorded activations).
    """
    check_hook_names(model, sorted({p.hook for v in variants for p in v} | set(record)))
    for v in variants:
        for p in v:
            if p.key() not in sources:
                raise IclensError(f"patch at {p.hook} needs source {p.key()!r}, which was not cached.")
    b = tokens.shape[0]
    per = max(1, max_batch // b)
    out = torch.empty(len(variants))
    recorded: dict[str, list[torch.Tensor]] = defaultdict(list)
    chunks = range(0, len(variants), per)
    for start in tqdm(chunks, desc=desc, disable=not progress or len(chunks) < 2, leave=False):
        chunk = variants[start:start + per]
        k = len(chunk)
        by_hook: dict[str, list[tuple[int, Patch]]] = defaultdict(list)
        for j, v in enumerate(chunk):
            for p in v:
                by_hook[p.hook].append((j, p))

        def make(name, patches):
            def hook(x, hook):
                x = x.clone()
                xv = x.view(k, b, *x.shape[1:])
                for j, p in patches:
                    sl = p.slices()
                    xv[j][sl] = sources[p.key()][sl].to(x.dtype)
                return x
            return hook

        def make_rec(name):
            def hook(x, hook):
                recorded[name].append(x.detach().clone())
            return hook

        hooks = [(n, make(n, ps)) for n, ps in by_hook.items()] + [(n, make_rec(n)) for n in record]
        with torch.inference_mode():
            logits = last_logits(model, tokens.repeat(k, 1), hooks).view(k, b, -1)
            for j in range(k):
                out[start + j] = score(logits[j]).float().cpu()
    return out, {n: torch.cat(v) for n, v in recorded.items()}


# ----------------------------------------------------------------------------- strategies


def _n_kv_heads(model) -> int:
    return int(getattr(model.cfg, "n_key_value_heads", None) or model.cfg.n_heads)


def resid_sweep(model, n_pos: int, point: str = "resid_pre") -> Sweep:
    """Residual stream at each layer x position (`point`: resid_pre / resid_mid / resid_post).

    On a TransformerBridge `hook_resid_mid` is an alias of `ln2.hook_in`: patching it changes
    only the MLP's input, not the residual stream that later layers read; use resid_pre /
    resid_post for the stream itself.
    """
    L = model.cfg.n_layers
    v = [[Patch(f"blocks.{l}.hook_{point}", (p, None))] for l in range(L) for p in range(n_pos)]
    return Sweep(f"{point} (layer x position)", v, (L, n_pos), ("layer", "pos"))


def head_sweep(model) -> Sweep:
    """Each head's output z at every position -> [layer, head]."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    v = [[Patch(f"blocks.{l}.attn.hook_z", (None, h))] for l in range(L) for h in range(H)]
    return Sweep("head output (layer x head)", v, (L, H), ("layer", "head"))


def head_pos_sweep(model, n_pos: int) -> Sweep:
    """Each head's output at one position -> [layer, pos, head]."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    v = [[Patch(f"blocks.{l}.attn.hook_z", (p, h))] for l in range(L) for p in range(n_pos) for h in range(H)]
    return Sweep("head output per position (layer x pos x head)", v, (L, n_pos, H), ("layer", "pos", "head"))


def mlp_sweep(model) -> Sweep:
    """Each MLP's output at every position -> [layer]."""
    L = model.cfg.n_layers
    return Sweep("MLP output (layer)", [[Patch(f"blocks.{l}.hook_mlp_out")] for l in range(L)], (L,), ("layer",))


def pattern_sweep(model) -> Sweep:
    """Each head's attention pattern (hook_pattern [batch head q k]) -> [layer, head]."""
    L, H = model.cfg.n_layers, model.cfg.n_heads
    v = [[Patch(f"blocks.{l}.attn.hook_pattern", (h,))] for l in range(L) for h in range(H)]
    return Sweep("attention pattern (layer x head)", v, (L, H), ("layer", "head"))


def value_sweep(model) -> Sweep:
    """Each value head (hook_v [batch pos kv_head d_head]) -> [layer, kv_head].

    With grouped-query attention (Gemma 3: 1 key/value head for 4 query heads) a value
    head is shared by its query group, so the sweep has n_key_value_heads columns.
    """
    L, H = model.cfg.n_layers, _n_kv_heads(model)
    v = [[Patch(f"blocks.{l}.attn.hook_v", (None, h))] for l in range(L) for h in range(H)]
    return Sweep("value vectors (layer x kv head)", v, (L, H), ("layer", "kv_head"))


SWEEPS: dict[str, Callable[..., Sweep]] = {
    "resid": resid_sweep, "heads": head_sweep, "head_pos": head_pos_sweep,
    "mlp": mlp_sweep, "pattern": pattern_sweep, "values": value_sweep,
}


def make_sweep(model, kind: str, n_pos: int) -> Sweep:
    """The sweep registry: kind in SWEEPS."""
    if kind not in SWEEPS:
        raise IclensError(f"unknown sweep {kind!r}: use one of {', '.join(SWEEPS)}.")
    return SWEEPS[kind](model, n_pos) if kind in ("resid", "head_pos") else SWEEPS[kind](model)


# ----------------------------------------------------------------------------- the generic patch


@dataclass
class PatchResult:
    """Scores of one sweep, laid out as `axes` (normalised metric: corrupted 0, clean 1)."""

    sweep: str
    method: str
    axes: tuple[str, ...]
    values: np.ndarray
    clean_ld: float
    corrupted_ld: float
    seconds: float
    n_forward: int = 0


def task_metric(model, task: PatchTask) -> NormalisedLogitDiff:
    """The normalised logit difference with this task's clean / corrupted baselines."""
    with torch.inference_mode():
        lc = last_logits(model, task.clean)
        lx = last_logits(model, task.corrupted)
    return NormalisedLogitDiff(float(logit_diff(lc, task.answer, task.wrong).mean()),
                               float(logit_diff(lx, task.answer, task.wrong).mean()))


def activation_patch(model, task: PatchTask, sweep: Sweep, *, direction: str = "denoise", max_batch: int = 256,
                     metric: NormalisedLogitDiff | None = None, progress: bool = False) -> PatchResult:
    """Patch every component of `sweep` separately and score each patched run.

    direction: ``"denoise"`` runs the corrupted prompts with clean activations written
    in (score = fraction of clean behaviour restored); ``"noise"`` runs the clean
    prompts with corrupted activations written in (1 - score = damage done).
    """
    if direction not in ("denoise", "noise"):
        raise IclensError(f"unknown direction {direction!r}: use 'denoise' or 'noise'.")
    t0 = time.perf_counter()
    metric = metric or task_metric(model, task)
    src_tokens, tgt_tokens = (task.clean, task.corrupted) if direction == "denoise" else (task.corrupted, task.clean)
    sources = cache_hooks(model, src_tokens, sweep.hooks)
    vals, _ = run_variants(model, tgt_tokens, sweep.variants, sources,
                           lambda lg: metric(lg, task.answer, task.wrong), max_batch=max_batch, progress=progress,
                           desc=sweep.name)
    per = max(1, max_batch // task.n_prompts)
    return PatchResult(sweep.name, f"activation ({direction})", sweep.axes, vals.numpy().reshape(sweep.shape),
                       metric.clean_ld, metric.corrupted_ld, time.perf_counter() - t0,
                       n_forward=-(-len(sweep.variants) // per) + 3)
