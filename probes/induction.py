"""Induction, previous-token, duplicate-token and n-gram heads; ICL score; head DLA.

`scan(model, ...)` runs two batches of synthetic prompts through the model:

1. [BOS] R R repeated random tokens (Olsson et al. 2022, "In-context learning and
   induction heads"): previous-token, duplicate-token and induction scores from
   the attention patterns, the loss by position (first copy vs second copy: the
   ICL score) and the direct logit attribution of each head to the correct next
   token on the second copy.
2. Sequences over a small alphabet, where (n-1)-gram repeats are common: n-gram
   head scores for each order n (Akyürek et al. 2024, "In-Context Language
   Learning: Architectures and Algorithms"). This pass stops right after the last
   layer's attention pattern (no MLP, no unembedding).

Only the hooks the scores read are recorded (`probes.hooks.capture`), prompts are
batched, and every score is reported per layer and head as a mean and a standard
deviation over prompts. Definitions of each score: `probes.head_scores`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from probes import dla
from probes.errors import IclensError
from probes.head_scores import ngram_masks, ngram_scores, repeated_scores
from probes.hooks import capture
from probes.icl_score import NaturalTextICL, icl_score, per_token_loss
from probes.prompts import ngram_sequences, repeated_random_tokens, token_pool
from probes.results import to_jsonable, versions, write_json

SCORE_NAMES = ("previous_token", "duplicate_token", "induction")


@dataclass(frozen=True, kw_only=True)
class ScanConfig:
    """What `scan` runs. Validated on construction; saved beside every result."""

    n_prompts: int = 16
    seq_len: int = 64
    seed: int = 0
    ngram_orders: tuple[int, ...] = (2, 3, 4)
    ngram_alphabet: int = 6
    batch_size: int = 8
    example_heads: int = 3

    def __post_init__(self):
        if self.n_prompts < 1:
            raise IclensError("n_prompts must be at least 1 (the prompt list would be empty).")
        if self.seq_len < 4:
            raise IclensError("seq_len must be at least 4.")
        if self.batch_size < 1:
            raise IclensError("batch_size must be at least 1.")
        if any(n < 2 for n in self.ngram_orders):
            raise IclensError(f"n-gram orders must be >= 2 (got {list(self.ngram_orders)}): an order-1 'n-gram' matches nothing.")
        if not 2 <= self.ngram_alphabet <= 64:
            raise IclensError("ngram_alphabet must be between 2 and 64.")


@dataclass
class HeadScores:
    """One score for every head: mean and std over prompts, as [layer][head] lists."""

    mean: list[list[float]]
    std: list[list[float]]

    @classmethod
    def from_samples(cls, samples: torch.Tensor) -> HeadScores:
        """`samples`: [prompt, layer, head]; prompts without a defined score are NaN and skipped."""
        a = samples.double().numpy()
        with warnings.catch_warnings():  # an all-NaN head (no scorable position) stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(a, 0), np.nanstd(a, 0)
        return cls(mean.tolist(), std.tolist())


@dataclass
class InductionResult:
    """Everything `scan` measured; JSON-serialisable, holds no tensors."""

    model: str
    config: ScanConfig
    n_layers: int
    n_heads: int
    scores: dict[str, HeadScores]
    loss_by_position: list[float]
    loss_by_position_std: list[float]
    first_half_loss: float
    second_half_loss: float
    icl_score: float
    example_tokens: list[str] = field(default_factory=list)
    example_patterns: dict[str, list[list[float]]] = field(default_factory=dict)
    natural_text: NaturalTextICL | None = None
    versions: dict[str, str] = field(default_factory=versions)

    def top(self, score: str = "induction", k: int = 5) -> list[tuple[int, int, float]]:
        """The k heads with the highest mean `score`, as (layer, head, score), best first."""
        if score not in self.scores:
            raise IclensError(f"unknown score {score!r}; scores: {', '.join(self.scores)}")
        m = np.asarray(self.scores[score].mean, dtype=float)
        order = np.argsort(np.nan_to_num(-m, nan=np.inf), axis=None)[:k]
        return [(int(i // m.shape[1]), int(i % m.shape[1]), float(m.flat[i])) for i in order]

    def save(self, path: str | Path) -> Path:
        return write_json(path, self)

    @classmethod
    def load(cls, path: str | Path) -> InductionResult:
        d = json.loads(Path(path).read_text())
        d["config"] = ScanConfig(**{**d["config"], "ngram_orders": tuple(d["config"]["ngram_orders"])})
        d["scores"] = {k: HeadScores(**v) for k, v in d["scores"].items()}
        if d.get("natural_text"):
            d["natural_text"] = NaturalTextICL(**d["natural_text"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def _check_context(model, length: int) -> None:
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and length > n_ctx:
        raise IclensError(f"prompts of {length} tokens exceed the model's context of {n_ctx}: use a smaller --seq-len.")


def scan(model, *, config: ScanConfig | None = None, progress: Callable[[float, str], None] | None = None,
         **overrides) -> InductionResult:
    """Score every head of `model` as previous-token / duplicate / induction / n-gram head.

    Args:
        model: a TransformerBridge (any `load_model` result) or a hooked toy model
            with a tokenizer.
        config: a ScanConfig; or pass its fields as keywords (`n_prompts=16, seq_len=64, seed=0`).
        progress: optional callback(fraction_done, message), e.g. a tqdm or Streamlit bar.
    Returns:
        InductionResult with per-head mean/std for each score, the loss-by-position
        curve on repeated sequences and the ICL score (second-half minus first-half loss).
    """
    cfg = config or ScanConfig(**overrides)
    if config is not None and overrides:
        cfg = dataclasses.replace(config, **overrides)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    pool = token_pool(model.tokenizer, model.cfg.d_vocab)
    bos = pool.bos is not None
    _check_context(model, int(bos) + 2 * cfg.seq_len)
    tokens = repeated_random_tokens(pool, n_prompts=cfg.n_prompts, seq_len=cfg.seq_len, seed=cfg.seed)
    device = next(model.parameters()).device
    pattern_names = [f"blocks.{L}.attn.hook_pattern" for L in range(n_layers)]
    second = int(bos) + cfg.seq_len
    steps = (2 if cfg.ngram_orders else 1) * len(range(0, cfg.n_prompts, cfg.batch_size))
    done = 0

    def tick(msg):
        nonlocal done
        done += 1
        if progress:
            progress(done / steps, msg)

    # Pass 1: repeated tokens -> pattern scores, loss, DLA. Patterns are reduced to
    # per-head scores inside the hook so the [batch head pos pos] tensors never pile up.
    per_score = {k: [] for k in SCORE_NAMES}
    dla_rows, losses = [], []
    W_O = model.W_O.detach()
    example_pat = {}
    for sl in _batches(cfg.n_prompts, cfg.batch_size):
        batch = tokens[sl].to(device)

        def reduce(name, act, first=sl.start == 0):
            if name.endswith("hook_pattern"):
                if first:
                    example_pat[name] = act[0].float().cpu()
                return repeated_scores(act.float(), cfg.seq_len, bos)
            return act

        logits, cache = capture(model, batch, pattern_names + dla.names_needed(model), transform=reduce)
        for L in range(n_layers):
            for k, v in cache[pattern_names[L]].items():
                per_score[k].append((L, sl.start, v.cpu()))
        dla_rows.append(dla.head_dla(model, cache, batch, second, W_O).cpu())
        losses.append(per_token_loss(logits, batch).cpu())
        del logits, cache
        tick("repeated tokens")

    scores: dict[str, HeadScores] = {}
    for k in SCORE_NAMES:
        arr = torch.zeros(cfg.n_prompts, n_layers, n_heads)
        for L, start, v in per_score[k]:
            arr[start : start + v.shape[0], L] = v
        scores[k] = HeadScores.from_samples(arr)

    # Pass 2: n-gram sequences; stop after the last attention pattern.
    ng_tokens = ngram_sequences(pool, n_prompts=cfg.n_prompts, length=2 * cfg.seq_len,
                                alphabet=cfg.ngram_alphabet, seed=cfg.seed)
    ng = {n: torch.full((cfg.n_prompts, n_layers, n_heads), float("nan")) for n in cfg.ngram_orders}
    for sl in _batches(cfg.n_prompts, cfg.batch_size) if cfg.ngram_orders else ():
        batch = ng_tokens[sl]
        masks = [ngram_masks(row, cfg.ngram_orders, int(bos)) for row in batch]
        _, cache = capture(model, batch.to(device), pattern_names, stop_at=pattern_names[-1],
                           transform=lambda name, act: ngram_scores(act.float().cpu(), masks))
        for L in range(n_layers):
            for n, v in cache[pattern_names[L]].items():
                ng[n][sl, L] = v
        tick("n-gram sequences")
    for n in cfg.ngram_orders:
        scores[f"ngram_{n}"] = HeadScores.from_samples(ng[n])
    scores["dla"] = HeadScores.from_samples(torch.cat(dla_rows))

    loss = torch.cat(losses)  # [prompt, pos-1]; index t predicts token t+1
    first = slice(int(bos), second - 1)  # predictions of tokens inside the first copy
    late = slice(second, loss.shape[1])  # predictions of second-copy tokens 2.. (token 1 is unpredictable)
    icl, first_loss, second_loss = icl_score(loss, first, late)

    res = InductionResult(
        model=getattr(model.cfg, "model_name", "model"), config=cfg, n_layers=n_layers, n_heads=n_heads,
        scores=scores, loss_by_position=loss.mean(0).tolist(), loss_by_position_std=loss.std(0).tolist(),
        first_half_loss=first_loss, second_half_loss=second_loss, icl_score=icl,
    )
    res.example_tokens = [str(t) for t in model.to_str_tokens(tokens[0])]
    heads = res.top("induction", cfg.example_heads) + res.top("previous_token", 1)
    res.example_patterns = {f"{L}.{H}": to_jsonable(example_pat[pattern_names[L]][H]) for L, H, _ in heads}
    return res
