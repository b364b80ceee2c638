"""Memory retrieval at function tokens (Zhang, Lin & Li 2025, section "memory retrieval").

Claim tested: at a function-token position the model reads out (retrieves) the
features that predict the next token. For sampled positions of two kinds, function
and content (one position per sequence; the same sequences for both kinds, so the
comparison is paired), with the SAE spliced *out* (the model runs unmodified):

- which SAE features are active at ``blocks.L.hook_resid_pre`` there;
- each active feature's contribution to the log-probability of the actual next
  token: ``f_i * (scale * W_dec[i]) . d logp(next) / d resid_L`` (activation x decoder
  direction x the gradient through the rest of the model and the unembedding: a
  first-order attribution, one backward pass per batch);
- the exact effect of ablating the ``top_m`` most active features at that position
  (subtracting ``f_i * scale * W_dec[i]`` from the residual, leaving the SAE error in
  place): change of the next-token log-prob, KL between the predictions, and how
  often the top-1 prediction changes. Function vs content positions ablate the same
  number of features.

Also reported: the features most often among the top ones at function positions,
with the tokens their decoder direction promotes through the unembedding (logit lens
of the decoder row; the final norm is ignored, so read it as a direction, not a size).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Int

from probes.errors import IclensError

GROUPS = ("function", "content")


@dataclass(frozen=True, kw_only=True)
class RetrievalConfig:
    """Attributes: positions per group (one per sequence), features ablated, earliest position, batch, seed."""

    n_positions: int = 64
    top_m: int = 5
    min_pos: int = 8
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.n_positions < 1 or self.top_m < 1 or self.min_pos < 1 or self.batch_size < 1:
            raise IclensError("n_positions, top_m, min_pos and batch_size must be >= 1.")


def sample_positions(tokens: Int[torch.Tensor, "batch pos"], function_mask: Bool[torch.Tensor, " vocab"],
                     cfg: RetrievalConfig) -> dict[str, tuple[list[int], list[int]]]:
    """{group: (rows, positions)}: for each sequence holding both kinds after `min_pos`, one random
    function and one random content position (the next token must exist), up to n_positions."""
    g = torch.Generator().manual_seed(cfg.seed)
    out: dict[str, tuple[list[int], list[int]]] = {k: ([], []) for k in GROUPS}
    last = tokens.shape[1] - 2
    for row in range(len(tokens)):
        if len(out["function"][0]) >= cfg.n_positions:
            break
        kinds = function_mask[tokens[row, cfg.min_pos:last + 1]]
        choices = {"function": kinds.nonzero().flatten(), "content": (~kinds).nonzero().flatten()}
        if any(len(c) == 0 for c in choices.values()):
            continue
        for name, c in choices.items():
            out[name][0].append(row)
            out[name][1].append(cfg.min_pos + int(c[torch.randint(len(c), (1,), generator=g)]))
    if not out["function"][0]:
        raise IclensError("no sequence holds both function and content tokens after min_pos: pass more text or a lower min_pos.")
    return out


def _run(model, layer, toks, rows_pos, edit=None, want_grad=False):
    """Next-token log-probs at the chosen positions; optionally edit / differentiate resid at layer."""
    name = f"blocks.{layer}.hook_resid_pre"
    ar = torch.arange(len(toks), device=toks.device)
    pos = torch.tensor(rows_pos, device=toks.device)
    box = {}

    def hook(x, hook):
        if edit is not None:
            x = x.clone()
            x[ar, pos] = x[ar, pos] - edit.to(x)
        if want_grad:
            x = x.detach().requires_grad_(True)
            box["x"] = x
        else:
            box["x"] = x.detach()
        return x

    with model.hooks(fwd_hooks=[(name, hook)]):
        logits = model(toks)
    logp = torch.log_softmax(logits[ar, pos].float(), dim=-1)
    return logp, box["x"]


@dataclass
class GroupResult:
    """Per-group averages over the sampled positions."""

    n: int
    clean_logprob: float
    l0: float
    attribution_total: float
    attribution_top_m: float
    ablation_delta_logprob: float
    ablation_kl: float
    ablation_top1_changed: float
    deltas: list[float] = field(default_factory=list)


@dataclass
class RetrievalResult:
    layer: int
    top_m: int
    groups: dict[str, GroupResult]
    top_features: list[dict]
    examples: list[dict]


def memory_retrieval(model, sae, layer: int, tokens: Int[torch.Tensor, "batch pos"],
                     function_mask: Bool[torch.Tensor, " vocab"], cfg: RetrievalConfig, *,
                     n_top_features: int = 12, n_examples: int = 12) -> RetrievalResult:
    """Attribute and ablate the top SAE features at function vs content positions (see module docstring)."""
    dev = next(model.parameters()).device
    sae = sae.to(dev)
    dirs = sae.feature_directions().to(dev)
    positions = sample_positions(tokens, function_mask, cfg)
    groups: dict[str, GroupResult] = {}
    feature_counts: Counter = Counter()
    examples: list[dict] = []
    tok = model.tokenizer
    for name, (rows, poss) in positions.items():
        acc = {k: [] for k in ("clean", "l0", "attr", "attr_top", "delta", "kl", "flip")}
        for s in range(0, len(rows), cfg.batch_size):
            r, p = rows[s:s + cfg.batch_size], poss[s:s + cfg.batch_size]
            toks = tokens[r, : max(p) + 2].to(dev)
            ar = torch.arange(len(r), device=dev)
            target = toks[ar, torch.tensor(p, device=dev) + 1]
            with torch.enable_grad():
                logp, x = _run(model, layer, toks, p, want_grad=True)
                logp[ar, target].sum().backward()
            grad = x.grad[ar, torch.tensor(p, device=dev)]
            resid = x.detach()[ar, torch.tensor(p, device=dev)]
            logp = logp.detach()
            with torch.no_grad():
                f = sae.encode(resid)
                attr = f * (dirs @ grad.T).T
                top = f.topk(cfg.top_m, dim=-1).indices
                f_top = torch.zeros_like(f).scatter(-1, top, f.gather(-1, top))
                edit = f_top @ dirs
                logp_abl, _ = _run(model, layer, toks, p, edit=edit)
            acc["clean"] += logp[ar, target].tolist()
            acc["l0"] += (f > 0).sum(-1).float().tolist()
            acc["attr"] += attr.sum(-1).tolist()
            acc["attr_top"] += attr.gather(-1, top).sum(-1).tolist()
            acc["delta"] += (logp_abl[ar, target] - logp[ar, target]).tolist()
            acc["kl"] += (logp.exp() * (logp - logp_abl)).sum(-1).tolist()
            acc["flip"] += (logp.argmax(-1) != logp_abl.argmax(-1)).float().tolist()
            if name == "function":
                feature_counts.update(top.flatten().tolist())
                for j in range(len(r)):
                    if len(examples) < n_examples:
                        ctx = tokens[r[j], max(0, p[j] - 8): p[j] + 1].tolist()
                        examples.append({"context": tok.decode(ctx), "token": tok.decode([int(toks[j, p[j]])]),
                                         "next": tok.decode([int(target[j])]), "top_features": top[j].tolist(),
                                         "delta_logprob": acc["delta"][-len(r) + j]})

        def mean(v):
            return float(sum(v) / max(len(v), 1))

        groups[name] = GroupResult(n=len(acc["clean"]), clean_logprob=mean(acc["clean"]), l0=mean(acc["l0"]),
                                   attribution_total=mean(acc["attr"]), attribution_top_m=mean(acc["attr_top"]),
                                   ablation_delta_logprob=mean(acc["delta"]), ablation_kl=mean(acc["kl"]),
                                   ablation_top1_changed=mean(acc["flip"]), deltas=acc["delta"])
    return RetrievalResult(layer=layer, top_m=cfg.top_m, groups=groups,
                           top_features=feature_promotions(model, dirs, feature_counts.most_common(n_top_features)),
                           examples=examples)


@torch.no_grad()
def feature_promotions(model, dirs, counted: list[tuple[int, int]], n_tokens: int = 6) -> list[dict]:
    """For (feature, count) pairs: the tokens each decoder direction promotes most through W_U."""
    if not counted:
        return []
    ids = torch.tensor([c[0] for c in counted], device=dirs.device)
    logits = dirs[ids] @ model.W_U.to(dirs)
    top = logits.topk(n_tokens, dim=-1).indices.cpu()
    return [{"feature": int(f), "count": int(c), "promotes": [model.tokenizer.decode([int(t)]) for t in top[i]]}
            for i, (f, c) in enumerate(counted)]
