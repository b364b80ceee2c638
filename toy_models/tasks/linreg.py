"""In-context linear regression (Garg et al. 2022; Zhang, Frei & Bartlett 2023).

A prompt is (x_1, y_1, ..., x_n, y_n) with x_i ~ N(0, Lambda) and y_i = w^T x_i (+ noise),
w ~ N(0, w_scale^2 I) drawn fresh per prompt. Lambda is the identity ("isotropic"),
x_scale^2 I ("scaled") or a random A A^T / d per prompt ("random"). The metric is
Garg et al.'s normalised squared error (y_hat - y)^2 / d at each number k of
in-context examples.

Models, baselines and the LSA share one call signature through `predict(model, xs, ys)`:
predictions [batch points] where entry k is the prediction of y_k from the k earlier
(x, y) pairs. A GPT-style model reads the interleaved sequence x_1, y_1, x_2, ...
(y zero-padded to width d) and is read out at the x positions.

Curriculum (Garg et al. Sec. 4): the effective dimension (remaining coordinates of
x zeroed) and the number of points grow by fixed increments every `every` steps.
Distribution shifts (Zhang et al. Sec. 5): task (w scaled by c or drawn Rademacher),
query (only the query x scaled by c), covariate (every x scaled by c).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from jaxtyping import Float
from torch import nn

from probes.errors import IclensError
from toy_models.tasks.base import Batch
from toy_models.tasks.registry import register_task

SHIFTS = ("none", "task", "query", "covariate")


@dataclass(kw_only=True)
class Curriculum:
    """Garg et al.'s curriculum: start small, add `dims_inc` dims and `points_inc` points every `every` steps."""

    dims_start: int
    points_start: int
    every: int = 2000
    dims_inc: int = 1
    points_inc: int = 2

    def __post_init__(self) -> None:
        if self.dims_start < 1 or self.points_start < 1 or self.every < 1:
            raise IclensError("Curriculum: dims_start, points_start and every must be >= 1.")


@dataclass(kw_only=True)
class LinRegConfig:
    """Linear-regression prompts. n_points = 0 means 2d + 2 (so k = 0..2d+1 examples precede a query)."""

    d: int = 5
    n_points: int = 0
    x_dist: str = "isotropic"
    x_scale: float = 1.0
    w_dist: str = "gaussian"
    w_scale: float = 1.0
    noise_std: float = 0.0
    loss_on: str = "all"
    curriculum: Curriculum | dict | None = None

    def __post_init__(self) -> None:
        if self.d < 1:
            raise IclensError(f"dimension d must be >= 1 (got {self.d}): pass --d 1 or more.")
        if self.n_points == 0:
            self.n_points = 2 * self.d + 2
        if self.n_points < 2:
            raise IclensError(f"n_points must be >= 2 (one example and a query), got {self.n_points}.")
        if self.x_dist not in ("isotropic", "scaled", "random"):
            raise IclensError(f"x_dist must be isotropic, scaled or random (got {self.x_dist!r}).")
        if self.w_dist not in ("gaussian", "rademacher"):
            raise IclensError(f"w_dist must be gaussian or rademacher (got {self.w_dist!r}).")
        if self.x_scale <= 0 or self.w_scale <= 0 or self.noise_std < 0:
            raise IclensError("x_scale and w_scale must be > 0 and noise_std >= 0.")
        if self.loss_on not in ("all", "last"):
            raise IclensError(f"loss_on must be 'all' or 'last' (got {self.loss_on!r}).")
        if isinstance(self.curriculum, dict):
            self.curriculum = Curriculum(**self.curriculum)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_prompts(cfg: LinRegConfig, batch: int, generator: torch.Generator, *, dims: int | None = None,
                   points: int | None = None) -> tuple[Float[torch.Tensor, "batch points d"], Float[torch.Tensor, "batch points"]]:
    """xs [batch points d] and ys [batch points] (CPU float32); `dims` < d zeroes the trailing coordinates."""
    d, n = cfg.d, points or cfg.n_points
    xs = torch.randn(batch, n, d, generator=generator)
    if cfg.x_dist == "scaled":
        xs = xs * cfg.x_scale
    elif cfg.x_dist == "random":
        A = torch.randn(batch, d, d, generator=generator) / d**0.5
        xs = torch.einsum("bpj,bij->bpi", xs, A) * cfg.x_scale
    if dims is not None and dims < d:
        xs[..., dims:] = 0
    if cfg.w_dist == "gaussian":
        w = torch.randn(batch, d, generator=generator)
    else:
        w = torch.randint(0, 2, (batch, d), generator=generator).float() * 2 - 1
    w = w * cfg.w_scale
    ys = torch.einsum("bpd,bd->bp", xs, w)
    if cfg.noise_std > 0:
        ys = ys + cfg.noise_std * torch.randn(ys.shape, generator=generator)
    return xs, ys


def interleave(xs: Float[torch.Tensor, "batch points d"], ys: Float[torch.Tensor, "batch points"]) -> Float[
        torch.Tensor, "batch pos d"]:
    """Garg et al.'s read-in sequence x_1, (y_1, 0..0), x_2, ... of 2 * points tokens of width d."""
    b, n, d = xs.shape
    ytok = torch.zeros_like(xs)
    ytok[..., 0] = ys
    return torch.stack([xs, ytok], dim=2).reshape(b, 2 * n, d)


def predict(model: Any, xs: Float[torch.Tensor, "batch points d"], ys: Float[torch.Tensor, "batch points"]) -> Float[
        torch.Tensor, "batch points"]:
    """Prediction of y_k from the k earlier pairs, for every k: one signature for every model and baseline."""
    if hasattr(model, "predict"):
        return model.predict(xs, ys)
    if isinstance(model, nn.Module):
        return model(interleave(xs, ys))[:, 0::2, 0]
    if callable(model):
        return model(xs, ys)
    raise IclensError(f"cannot predict with {type(model).__name__}: pass a toy model or a baseline.")


@register_task("linreg")
class LinearRegressionTask:
    """Noiseless (by default) in-context linear regression; MSE on every x position or only the last."""

    def __init__(self, config: LinRegConfig | None = None, **kwargs: Any):
        self.cfg = config if config is not None else LinRegConfig(**kwargs)

    def curriculum_state(self, step: int) -> tuple[int, int]:
        """(dims, points) in use at `step`."""
        cur, cfg = self.cfg.curriculum, self.cfg
        if cur is None:
            return cfg.d, cfg.n_points
        stage = step // cur.every
        return (min(cfg.d, cur.dims_start + stage * cur.dims_inc),
                min(cfg.n_points, cur.points_start + stage * cur.points_inc))

    def sample(self, batch_size: int, generator: torch.Generator, *, step: int = 0) -> Batch:
        dims, points = self.curriculum_state(step)
        xs, ys = sample_prompts(self.cfg, batch_size, generator, dims=dims, points=points)
        return {"xs": xs, "ys": ys}

    def loss(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        pred = predict(model, batch["xs"], batch["ys"])
        err = (pred - batch["ys"]) ** 2
        return err[:, -1].mean() if self.cfg.loss_on == "last" else err.mean()

    def config_dict(self) -> dict[str, Any]:
        return self.cfg.to_dict()


def shifted_config(cfg: LinRegConfig, shift: str, scale: float) -> LinRegConfig:
    """The test distribution for a task or covariate shift (query shift is applied per query in `error_curve`)."""
    if shift not in SHIFTS:
        raise IclensError(f"unknown shift {shift!r}: use one of {', '.join(SHIFTS)}.")
    if scale <= 0:
        raise IclensError(f"shift scale must be > 0 (got {scale}).")
    base = replace(cfg, curriculum=None, noise_std=0.0)
    if shift == "task":
        return replace(base, w_scale=cfg.w_scale * scale)
    if shift == "covariate":
        return replace(base, x_dist="scaled" if cfg.x_dist == "isotropic" else cfg.x_dist, x_scale=cfg.x_scale * scale)
    return base


@torch.no_grad()
def error_curve(predictors: dict[str, Any], cfg: LinRegConfig, *, shift: str = "none", scale: float = 1.0,
                n_prompts: int = 1000, seed: int = 1234, k_max: int | None = None, device: str | torch.device = "cpu",
                batch_size: int = 1000) -> dict[str, list[float]]:
    """Normalised squared error (y_hat - y)^2 / d at k = 0..k_max examples for each named predictor, same prompts.

    Baselines (plain callables / objects with `.float64 = True`) run in float64 on the CPU; nn.Modules
    run on `device`. The extra entry "zero" is the error of predicting 0 (E[y^2]/d). Query shift
    scales only the query x at each k (a separate pass per k).
    """
    k_max = cfg.n_points - 1 if k_max is None else k_max
    if k_max < 0 or k_max + 1 > cfg.n_points:
        raise IclensError(f"k = {k_max} in-context examples exceeds the context of {cfg.n_points - 1}: "
                          f"choose k <= {cfg.n_points - 1}.")
    test_cfg = shifted_config(cfg, shift, scale)
    gen = torch.Generator().manual_seed(seed)
    n_pts = k_max + 1
    sums = {name: torch.zeros(n_pts, dtype=torch.float64) for name in [*predictors, "zero"]}
    done = 0
    while done < n_prompts:
        b = min(batch_size, n_prompts - done)
        xs, ys = sample_prompts(test_cfg, b, gen, points=n_pts)
        variants = [(xs, ys, None)]
        if shift == "query":
            variants = []
            for k in range(n_pts):  # prompt truncated after the query: causal predictors ignore later points
                xq, yq = xs[:, : k + 1].clone(), ys[:, : k + 1].clone()
                xq[:, k] *= scale
                yq[:, k] *= scale
                variants.append((xq, yq, k))
        for name, model in [*predictors.items(), ("zero", None)]:
            for vx, vy, k in variants:
                if model is None:
                    pred = torch.zeros_like(vy, dtype=torch.float64)
                elif isinstance(model, nn.Module):
                    pred = predict(model, vx.to(device), vy.to(device)).double().cpu()
                else:
                    pred = predict(model, vx.double(), vy.double())
                err = ((pred - vy.double()) ** 2).sum(0) / cfg.d
                if k is None:
                    sums[name] += err
                else:
                    sums[name][k] += err[-1]
        done += b
    return {name: (s / n_prompts).tolist() for name, s in sums.items()}
