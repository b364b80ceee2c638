"""Mechanism probes for a trained linear-regression toy model, through its HookPoints.

Two views of what the prediction at the query reads (Garg et al. 2022 Sec. 5 ask which
algorithm the model runs; Akyurek et al. 2023 compare it with least squares):

- attention patterns from the query x token to every earlier token, per layer and
  head (`blocks.L.attn.hook_pattern`), averaged over prompts, split into x and y tokens;
- in-context-example attribution: for each example i, (a) gradient x input at
  `hook_embed` summed over the tokens of example i (one backward pass) and (b) the exact
  leave-one-out effect of ablating example i's read-in at `hook_embed` to that of a
  zero token. For least squares a zero example is the same as no example, so (b) is
  compared with the least-squares leave-one-out effect on the same prompts: a model
  that runs least squares has a correlation near 1.

Hooks are added with `model.hooks(...)`, which removes them in `finally`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Float

from probes.errors import IclensError
from toy_models.baselines import LeastSquares
from toy_models.models import ToyTransformer
from toy_models.tasks.linreg import LinRegConfig, interleave, sample_prompts


@dataclass
class MechanismResult:
    """Attention from the query and example attributions at k in-context examples (plain lists, JSON-ready)."""

    k: int
    query_attention: list[list[list[float]]]  # [layer][head][key position], mean over prompts
    attn_to_x: list[list[float]]  # [layer][head] share of the query's attention on x tokens
    attn_to_y: list[list[float]]
    example_pattern: list[list[float]]  # [layer][example]: head-mean attention on example i's two tokens
    grad_x_input: list[float]  # [example] mean |grad x input| at hook_embed
    loo_model: list[float]  # [example] mean |change of prediction| when example i is ablated
    loo_least_squares: list[float]
    loo_correlation: float  # Pearson r between model and least-squares LOO effects over prompts x examples
    sample_pattern: list[list[list[float]]]  # [layer][q][k] head-mean pattern of the first prompt


def _zero_example(act: Float[torch.Tensor, "batch pos d_model"], hook, *, positions: list[int],
                  value: torch.Tensor) -> torch.Tensor:
    act = act.clone()
    act[:, positions] = value
    return act


def probe_mechanism(model: ToyTransformer, cfg: LinRegConfig, *, k: int | None = None, n_prompts: int = 256,
                    seed: int = 2024) -> MechanismResult:
    """Attention and attribution for the prediction of y_k from k examples.

    Default k = d: there every example matters to least squares (with more than d examples, dropping one leaves
    the least-squares prediction unchanged, so its leave-one-out effects vanish).
    """
    if not isinstance(model, ToyTransformer):
        raise IclensError("mechanism probes need the GPT-style ToyTransformer (the LSA's attention is its closed form).")
    k = min(cfg.d, cfg.n_points - 1) if k is None else k
    if not 1 <= k <= cfg.n_points - 1 or 2 * (k + 1) > model.cfg.n_ctx:
        raise IclensError(f"k = {k} in-context examples does not fit the context (1 <= k <= {cfg.n_points - 1}).")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    xs, ys = sample_prompts(cfg, n_prompts, gen, points=k + 1)
    tokens = interleave(xs, ys).to(device)
    q = 2 * k  # the query x token

    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    pats = torch.stack([cache[f"blocks.{L}.attn.hook_pattern"] for L in range(model.cfg.n_layers)])  # L b h q k
    from_q = pats[:, :, :, q, : q + 1].mean(1)  # [layer head key]
    to_x = from_q[..., 0:q:2].sum(-1)
    to_y = from_q[..., 1:q:2].sum(-1)
    ex_pattern = (from_q[..., 0:q:2] + from_q[..., 1:q:2]).mean(1)  # [layer example]
    sample = pats[:, 0].mean(1)[:, : q + 1, : q + 1]

    # gradient x input at hook_embed (one backward pass for all prompts)
    store: dict[str, torch.Tensor] = {}

    def keep(act, hook):
        act.retain_grad()
        store["embed"] = act
        return act

    with torch.enable_grad(), model.hooks(fwd_hooks=[("hook_embed", keep)]):
        pred = model(tokens)[:, q, 0]
        pred.sum().backward()
    gxi = (store["embed"].grad * store["embed"]).sum(-1).detach()[:, :q]  # [batch pos]
    gxi_ex = (gxi[:, 0::2] + gxi[:, 1::2]).abs().mean(0)
    model.zero_grad(set_to_none=True)

    # leave-one-out by ablating example i's read-in to that of a zero token
    zero_tok = model.read_in(torch.zeros(1, 1, cfg.d, device=device))[0, 0].detach()
    loo = torch.zeros(n_prompts, k)
    with torch.no_grad():
        base = model(tokens)[:, q, 0]
        for i in range(k):
            hook = partial(_zero_example, positions=[2 * i, 2 * i + 1], value=zero_tok)
            with model.hooks(fwd_hooks=[("hook_embed", hook)]):
                loo[:, i] = (model(tokens)[:, q, 0] - base).cpu()
    ls = LeastSquares()
    ls_base = ls(xs, ys)[:, k]
    ls_loo = torch.zeros(n_prompts, k, dtype=torch.float64)
    for i in range(k):
        keep_idx = [j for j in range(k + 1) if j != i]
        ls_loo[:, i] = ls(xs[:, keep_idx], ys[:, keep_idx])[:, k - 1] - ls_base
    a, b = loo.double().flatten(), ls_loo.flatten()
    r = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
    return MechanismResult(
        k=k, query_attention=from_q.tolist(), attn_to_x=to_x.tolist(), attn_to_y=to_y.tolist(),
        example_pattern=ex_pattern.tolist(), grad_x_input=gxi_ex.tolist(), loo_model=loo.abs().mean(0).tolist(),
        loo_least_squares=ls_loo.abs().mean(0).tolist(), loo_correlation=r, sample_pattern=sample.tolist())


def hooks_clean(model: torch.nn.Module) -> bool:
    """True when no HookPoint of `model` carries a hook (what a probe must leave behind)."""
    return all(not (hp._forward_hooks or hp._backward_hooks or hp.fwd_hooks or hp.bwd_hooks)
               for hp in model.hook_dict.values())
