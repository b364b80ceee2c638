"""A small sparse autoencoder (SAE) trained on cached residual-stream activations.

Why not SAELens: SAELens pins TransformerLens < 4, and iclens runs on the
TransformerLens 4.x `TransformerBridge`; the two cannot be installed together. The
SAE needed here is small, so it lives in this one file.

Architecture (Bricken et al. 2023; Gao et al. 2024 "Scaling and evaluating sparse
autoencoders"):

    x_n   = x / scale                         scale fixed so E||x_n||^2 = d_in
    pre   = (x_n - b_dec) @ W_enc + b_enc     [.., d_sae]
    f     = TopK(pre) (keep the k largest, ReLU)   or   ReLU(pre) with an L1 penalty
    x_hat = (f @ W_dec + b_dec) * scale       decoder rows kept at unit norm

Feature activations `f` are in normalised units (comparable across models). TopK
training adds Gao et al.'s AuxK loss: the dead latents (not fired for
``dead_after_tokens`` tokens) reconstruct the residual error with their own top-k,
which revives them. Reported (`evaluate_sae`, `spliced_loss`): fraction of variance
explained (FVE), mean L0, dead / alive latents, and the model's next-token loss with
the SAE's reconstruction spliced into ``blocks.L.hook_resid_pre`` vs without.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from probes.activations import ActivationStore
from probes.errors import IclensError
from probes.results import atomic_write_text


@dataclass(frozen=True, kw_only=True)
class SAEConfig:
    """SAE shape and training settings.

    Attributes:
        d_in: width of the activations (the model's d_model).
        expansion: d_sae = expansion * d_in (8-16 is usual).
        kind: "topk" (exactly k latents per token) or "relu" (ReLU + L1 penalty).
        k: latents kept per token for topk.
        l1_coeff: L1 weight for relu (on normalised activations).
        aux_k / aux_coeff / dead_after_tokens: AuxK revival of dead latents (topk only; aux_k 0 = off).
        lr, batch_size, epochs, seed: Adam learning rate, tokens per step, passes over the cache, init/shuffle seed.
    """

    d_in: int
    expansion: int = 8
    kind: str = "topk"
    k: int = 32
    l1_coeff: float = 3.0
    aux_k: int = 64
    aux_coeff: float = 1 / 32
    dead_after_tokens: int = 50_000
    lr: float = 1e-3
    batch_size: int = 1024
    epochs: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.kind not in ("topk", "relu"):
            raise IclensError(f"SAE kind {self.kind!r} unknown: use 'topk' or 'relu'.")
        if self.d_in < 1 or self.expansion < 1:
            raise IclensError("d_in and expansion must be >= 1.")
        if self.kind == "topk" and not 1 <= self.k <= self.d_sae:
            raise IclensError(f"k must be in 1..d_sae={self.d_sae} (got {self.k}).")
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 1 or self.l1_coeff < 0:
            raise IclensError("lr must be > 0, batch_size and epochs >= 1, l1_coeff >= 0.")

    @property
    def d_sae(self) -> int:
        return self.d_in * self.expansion


class SparseAutoencoder(nn.Module):
    """TopK or ReLU sparse autoencoder; call it on raw activations, get raw reconstructions."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(cfg.seed)
        w = torch.randn(cfg.d_sae, cfg.d_in, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec = nn.Parameter(w)
        self.W_enc = nn.Parameter(w.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))
        self.register_buffer("scale", torch.tensor(1.0))

    def pre_acts(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_sae"]:
        return (x / self.scale - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: Float[torch.Tensor, "*batch d_sae"]) -> Float[torch.Tensor, "*batch d_sae"]:
        if self.cfg.kind == "relu":
            return torch.relu(pre)
        vals, idx = pre.topk(self.cfg.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))

    def encode(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_sae"]:
        """Feature activations (normalised units) of raw activations `x`."""
        return self.activate(self.pre_acts(x))

    def decode(self, f: Float[torch.Tensor, "*batch d_sae"]) -> Float[torch.Tensor, "*batch d_model"]:
        """Raw-unit reconstruction from feature activations."""
        return (f @ self.W_dec + self.b_dec) * self.scale

    def forward(self, x: Float[torch.Tensor, "*batch d_model"]) -> Float[torch.Tensor, "*batch d_model"]:
        return self.decode(self.encode(x))

    def feature_directions(self) -> Float[torch.Tensor, "d_sae d_model"]:
        """Each latent's raw-unit write direction: a unit of activation adds ``scale * W_dec[i]``."""
        return self.W_dec.detach() * self.scale


@dataclass
class TrainLog:
    """Training curve: one row every `every` steps."""

    step: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    fve: list[float] = field(default_factory=list)
    l0: list[float] = field(default_factory=list)
    dead_fraction: list[float] = field(default_factory=list)
    tokens_per_s: float = 0.0


def _init_from_data(sae: SparseAutoencoder, store: ActivationStore) -> None:
    x, _ = next(store.iter_tokens())
    with torch.no_grad():
        sae.scale.fill_(float(x.pow(2).sum(-1).mean().div(sae.cfg.d_in).sqrt().clamp_min(1e-8)))
        sae.b_dec.copy_(x.mean(0) / sae.scale)


def _aux_loss(sae: SparseAutoencoder, pre, err, dead: torch.Tensor) -> torch.Tensor:
    """AuxK (Gao et al. 2024): the dead latents' top-k_aux reconstruct the residual error."""
    n_dead = int(dead.sum())
    if n_dead == 0 or sae.cfg.aux_k == 0:
        return pre.new_zeros(())
    masked = pre.masked_fill(~dead, float("-inf"))
    vals, idx = masked.topk(min(sae.cfg.aux_k, n_dead), dim=-1)
    f_aux = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    err_hat = f_aux @ sae.W_dec
    return (err_hat - err.detach()).pow(2).sum(-1).mean() / err.detach().pow(2).sum(-1).mean().clamp_min(1e-8)


def train_sae(store: ActivationStore, cfg: SAEConfig, *, progress: bool = True, every: int = 20,
              max_sequences: int | None = None) -> tuple[SparseAutoencoder, TrainLog]:
    """Train an SAE on the cache, one shard in memory at a time (shards and rows shuffled per epoch).

    Returns:
        (the trained SAE in eval mode, its training curve).
    """
    import time

    if cfg.d_in != store.d_model:
        raise IclensError(f"SAE d_in {cfg.d_in} != cached d_model {store.d_model}: build the config from the cache.")
    torch.manual_seed(cfg.seed)
    sae = SparseAutoencoder(cfg)
    _init_from_data(sae, store)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    since_fired = torch.zeros(cfg.d_sae, dtype=torch.long)
    log, step, seen = TrainLog(), 0, 0
    n_total = (max_sequences or store.n_sequences) * (store.seq_len - int(store.has_bos)) * cfg.epochs
    bar = tqdm(total=n_total, unit="tok", desc="SAE", disable=not progress)
    t0 = time.perf_counter()
    sae.train()
    for _epoch in range(cfg.epochs):
        for x_all, _ in store.iter_tokens(max_sequences=max_sequences):
            perm = torch.randperm(len(x_all), generator=gen)
            for start in range(0, len(perm), cfg.batch_size):
                x = x_all[perm[start:start + cfg.batch_size]]
                xn = x / sae.scale
                pre = sae.pre_acts(x)
                f = sae.activate(pre)
                xn_hat = f @ sae.W_dec + sae.b_dec
                err = xn - xn_hat
                mse = err.pow(2).sum(-1).mean()
                if cfg.kind == "relu":
                    loss = mse + cfg.l1_coeff * f.sum(-1).mean() / math.sqrt(cfg.d_in)
                else:
                    dead = since_fired >= cfg.dead_after_tokens
                    loss = mse + cfg.aux_coeff * _aux_loss(sae, pre, err, dead)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    sae.W_dec.div_(sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))
                    fired = (f > 0).any(0)
                    since_fired += len(x)
                    since_fired[fired] = 0
                step += 1
                seen += len(x)
                bar.update(len(x))
                if step % every == 0 or step == 1:
                    with torch.no_grad():
                        var = (xn - xn.mean(0)).pow(2).sum(-1).mean()
                        log.step.append(step)
                        log.tokens.append(seen)
                        log.fve.append(float(1 - mse / var.clamp_min(1e-12)))
                        log.l0.append(float((f > 0).sum(-1).float().mean()))
                        log.dead_fraction.append(float((since_fired >= cfg.dead_after_tokens).float().mean()))
                    bar.set_postfix(fve=f"{log.fve[-1]:.3f}", l0=f"{log.l0[-1]:.1f}")
    bar.close()
    log.tokens_per_s = seen / max(time.perf_counter() - t0, 1e-9)
    sae.eval()
    return sae, log


@dataclass
class SAEStats:
    """Reconstruction and sparsity over a cache (positions after BOS)."""

    n_tokens: int
    fve: float
    l0: float
    n_latents: int
    n_alive: int
    n_dead: int
    dead_fraction: float
    firing_frequency: list[float]


@torch.no_grad()
def evaluate_sae(sae: SparseAutoencoder, store: ActivationStore, *, max_sequences: int | None = None) -> SAEStats:
    """FVE = 1 - sum||x - x_hat||^2 / sum||x - mean(x)||^2 (raw units), mean L0, alive/dead latents.

    A latent is alive when it fires (activation > 0) on at least one token of the evaluated cache.
    """
    n, sse = 0, 0.0
    sx = torch.zeros(store.d_model, dtype=torch.float64)
    sxx = torch.zeros((), dtype=torch.float64)
    fires = torch.zeros(sae.cfg.d_sae, dtype=torch.long)
    l0_sum = 0.0
    for x, _ in store.iter_tokens(max_sequences=max_sequences):
        f = sae.encode(x)
        sse += float((sae.decode(f) - x).double().pow(2).sum())
        sx += x.double().sum(0)
        sxx += x.double().pow(2).sum()
        active = f > 0
        fires += active.sum(0)
        l0_sum += float(active.sum())
        n += len(x)
    sst = float(sxx - sx.pow(2).sum() / max(n, 1))
    alive = int((fires > 0).sum())
    return SAEStats(n_tokens=n, fve=1 - sse / max(sst, 1e-12), l0=l0_sum / max(n, 1), n_latents=sae.cfg.d_sae,
                    n_alive=alive, n_dead=sae.cfg.d_sae - alive, dead_fraction=1 - alive / sae.cfg.d_sae,
                    firing_frequency=(fires.double() / max(n, 1)).tolist())


@torch.no_grad()
def spliced_loss(model, sae: SparseAutoencoder, layer: int, tokens: Int[torch.Tensor, "batch pos"], *,
                 batch_size: int = 4, skip_bos: bool = True, mean_act: Float[torch.Tensor, " d_model"] | None = None
                 ) -> dict[str, float]:
    """Mean next-token loss with ``blocks.{layer}.hook_resid_pre`` replaced by the SAE's reconstruction.

    Returns ``clean``, ``spliced``, ``delta`` (= spliced - clean) and, when `mean_act` is
    given, ``mean_ablated`` (every position replaced by the mean activation) and
    ``loss_recovered`` = (mean_ablated - spliced) / (mean_ablated - clean). Position 0
    (BOS) is left untouched when `skip_bos`.
    """
    dev = next(model.parameters()).device
    sae = sae.to(dev)
    start = 1 if skip_bos else 0
    name = f"blocks.{layer}.hook_resid_pre"

    def splice(x, hook):
        x = x.clone()
        x[:, start:] = sae(x[:, start:])
        return x

    def ablate(x, hook):
        x = x.clone()
        x[:, start:] = mean_act.to(x)
        return x

    totals = {"clean": 0.0, "spliced": 0.0, "mean_ablated": 0.0}
    n = 0
    for i in range(0, len(tokens), batch_size):
        toks = tokens[i:i + batch_size].to(dev)
        totals["clean"] += float(model(toks, return_type="loss", loss_per_token=True).sum())
        with model.hooks(fwd_hooks=[(name, splice)]):
            totals["spliced"] += float(model(toks, return_type="loss", loss_per_token=True).sum())
        if mean_act is not None:
            with model.hooks(fwd_hooks=[(name, ablate)]):
                totals["mean_ablated"] += float(model(toks, return_type="loss", loss_per_token=True).sum())
        n += toks.shape[0] * (toks.shape[1] - 1)
    out = {k: v / max(n, 1) for k, v in totals.items()}
    out["delta"] = out["spliced"] - out["clean"]
    if mean_act is None:
        del out["mean_ablated"]
    else:
        gap = out["mean_ablated"] - out["clean"]
        out["loss_recovered"] = (out["mean_ablated"] - out["spliced"]) / gap if abs(gap) > 1e-12 else float("nan")
    out["n_tokens"] = n
    return out


def save_sae(sae: SparseAutoencoder, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``sae.safetensors`` + ``sae.json`` (config and `extra`, e.g. the training log)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".sae.safetensors.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in sae.state_dict().items()}, str(tmp))
    os.replace(tmp, folder / "sae.safetensors")
    atomic_write_text(folder / "sae.json", json.dumps({"config": asdict(sae.cfg), **(extra or {})}, indent=1) + "\n")
    return folder


def load_sae(folder: str | os.PathLike) -> tuple[SparseAutoencoder, dict[str, Any]]:
    """(SAE in eval mode, the JSON saved beside it)."""
    folder = Path(folder)
    try:
        info = json.loads((folder / "sae.json").read_text())
        state = load_file(str(folder / "sae.safetensors"))
    except (OSError, ValueError):
        raise IclensError(f"{folder} holds no saved SAE (sae.json + sae.safetensors): train one first.") from None
    sae = SparseAutoencoder(SAEConfig(**info["config"]))
    sae.load_state_dict(state)
    return sae.eval(), info
