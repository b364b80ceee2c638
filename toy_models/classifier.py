"""The minimal in-context classifier of Reddy 2023 and its induction-head measurements.

Network: the tokens themselves (a read-in that starts as the identity, so the residual stream is
[one-hot position | content] as in Reddy's network; or a random linear read-in to another width),
two causal single-head attention-only layers with residual connections and no normalisation, then
a ReLU MLP classifier on the final token
(built on `toy_models.models.ToyTransformer`, so the standard hook names apply:
`blocks.L.attn.hook_pattern` [batch head q k], `blocks.L.attn.hook_z`, ...).

Measurements (Reddy's progress measures, Sec. 3): the previous-token score of layer 1 (mean
attention from each label token to the item just before it) and the induction score of layer 2
(attention mass from the query to the label tokens that follow items of the query's class);
`ablate_head` zero-ablates a head's output (`hook_z`) inside a context manager.

`handset_induction_model` writes an induction circuit into the weights by construction (layer 1
copies the previous token's content into a free subspace, layer 2 matches the query against that
subspace and copies the label vector, the MLP reads the label vector out as logits): the known
answer the tests check the measurements and the eval sets against.
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from probes.errors import IclensError
from toy_models.models import ToyConfig, ToyTransformer
from toy_models.tasks.base import Batch
from toy_models.tasks.classification import ClassificationConfig, ClassificationTask


@dataclass(kw_only=True)
class ClassifierConfig:
    """Minimal network: mlp_hidden units in the ReLU classifier; d_model = 0 feeds the tokens into the residual
    stream as they are (read-in = identity, width P + D, Reddy's network), d_model > 0 uses a random linear read-in
    to that width."""

    d_model: int = 0
    mlp_hidden: int = 128
    init_std: float = 0.02

    def __post_init__(self) -> None:
        if self.d_model < 0 or self.mlp_hidden < 1 or self.init_std <= 0:
            raise IclensError("classifier: d_model must be >= 0 (0: the token width), mlp_hidden >= 1, init_std > 0.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def minimal_classifier(task_cfg: ClassificationConfig, cfg: ClassifierConfig | None = None, *,
                       seed: int | None = None) -> ToyTransformer:
    """Two causal single-head attention-only layers (no LayerNorm, positions in the tokens) + MLP read-out.

    With cfg.d_model = 0 the read-in starts as the identity (it stays a parameter, so a forgetting schedule can
    reset it): the attention layers see the one-hot positions and contents themselves, as in Reddy's network.
    """
    cfg = cfg or ClassifierConfig()
    width = cfg.d_model or task_cfg.d_in
    toy = ToyConfig(n_layers=2, n_heads=1, d_model=width, d_head=width, n_ctx=task_cfg.seq_len,
                    d_in=task_cfg.d_in, d_out=task_cfg.n_labels, attn_only=True, positional="none",
                    normalization="none", d_readout_hidden=cfg.mlp_hidden, init_std=cfg.init_std)
    model = ToyTransformer(toy, seed=seed)
    if not cfg.d_model:
        with torch.no_grad():
            model.read_in.W_in.copy_(torch.eye(width))
    return model


def handset_induction_model(task: ClassificationTask, *, beta: float = 60.0) -> ToyTransformer:
    """An induction-head classifier with weights set by construction (no training).

    Residual layout: [position one-hot P | content D | previous content D | copied label D].
    Layer 1 (previous-token head): query position p matches key position p - 1 with logit beta,
    value = content, written to "previous content". Layer 2 (induction head): the query's
    content matches the keys' previous content with logit beta, value = content (the label
    vector at label tokens), written to "copied label". Read-out: logits = label_vecs @ copied
    label, through ReLU units (+z, -z).
    """
    c = task.cfg
    P, D, L = c.pos_dim, c.dim, c.n_labels
    d_model = P + 3 * D
    toy = ToyConfig(n_layers=2, n_heads=1, d_model=d_model, d_head=max(P, D), n_ctx=c.seq_len, d_in=c.d_in,
                    d_out=L, attn_only=True, positional="none", normalization="none", d_readout_hidden=2 * L)
    model = ToyTransformer(toy, seed=0)
    dh = toy.d_head
    pos, cont, prev, out = slice(0, P), slice(P, P + D), slice(P + D, P + 2 * D), slice(P + 2 * D, P + 3 * D)
    scale = dh ** 0.5  # undo the 1/sqrt(d_head) of the attention
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.read_in.W_in[:, : P + D] = torch.eye(P + D)
        a1, a2 = model.blocks[0].attn, model.blocks[1].attn
        a1.W_Q[0, pos, :P] = torch.eye(P) * beta * scale
        a1.W_K[0, pos, :P] = torch.diag(torch.ones(P - 1), 1)  # key at position j lands on query slot j + 1
        a1.W_V[0, cont, :D] = torch.eye(D)
        a1.W_O[0, :D, prev] = torch.eye(D)
        a2.W_Q[0, cont, :D] = torch.eye(D) * beta * scale
        a2.W_K[0, prev, :D] = torch.eye(D)
        a2.W_V[0, cont, :D] = torch.eye(D)
        a2.W_O[0, :D, out] = torch.eye(D)
        lv = task.label_vecs
        model.read_out.hidden.weight[:L, out] = lv
        model.read_out.hidden.weight[L:, out] = -lv
        model.read_out.out.weight[:, :L] = torch.eye(L)
        model.read_out.out.weight[:, L:] = -torch.eye(L)
    return model


@torch.no_grad()
def head_scores(model: ToyTransformer, batch: Batch, *, chunk: int = 512) -> dict[str, float]:
    """Previous-token score (layer 1: label token -> item before it) and induction score (layer 2: query ->
    label tokens after items of the query's class), averaged over the batch."""
    n_items = batch["labels"].shape[1]
    dev = next(model.parameters()).device
    names = ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    prev_sum, ind_sum, total = 0.0, 0.0, 0
    lab_pos = torch.arange(1, 2 * n_items, 2)
    for i in range(0, batch["tokens"].shape[0], chunk):
        toks = batch["tokens"][i:i + chunk].to(dev)
        _, cache = model.run_with_cache(toks, names_filter=lambda n: n in names)
        p1 = cache[names[0]][:, 0].cpu()  # [batch q k]
        p2 = cache[names[1]][:, 0, -1].cpu()  # [batch k] from the query
        prev_sum += float(p1[:, lab_pos, lab_pos - 1].mean(-1).sum())
        match = batch["match"][i:i + chunk].float()
        ind_sum += float((p2[:, lab_pos] * match).sum())
        total += toks.shape[0]
    return {"prev_token_score": prev_sum / total, "induction_score": ind_sum / total}


@contextmanager
def ablate_head(model: ToyTransformer, layer: int, head: int = 0) -> Iterator[ToyTransformer]:
    """Zero-ablate one head's output (its hook_z) while the context is open; the hook is removed on exit."""
    if not 0 <= layer < model.cfg.n_layers or not 0 <= head < model.cfg.n_heads:
        raise IclensError(f"no head {layer}.{head}: the model has {model.cfg.n_layers} layers x "
                          f"{model.cfg.n_heads} heads.")

    def zero(z: Float[torch.Tensor, "batch pos head d_head"], hook: Any) -> torch.Tensor:
        z = z.clone()
        z[:, :, head] = 0.0
        return z

    with model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_z", zero)]):
        yield model


def has_hooks(model: nn.Module) -> bool:
    """Whether any HookPoint of `model` still carries a hook (a probe must leave none)."""
    from transformer_lens.hook_points import HookPoint

    return any(isinstance(m, HookPoint) and (m._forward_hooks or m._backward_hooks or m.fwd_hooks or m.bwd_hooks)
               for m in model.modules())
