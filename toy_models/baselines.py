"""Baselines for in-context linear regression, with the models' call signature.

Garg et al. 2022 Sec. 3 compare the transformer against least squares, 3-nearest
neighbours and averaging; Zhang, Frei & Bartlett 2023 (and von Oswald et al. 2023)
against one step of (preconditioned) gradient descent. Each baseline here is a
callable `baseline(xs [batch points d], ys [batch points]) -> preds [batch points]`
where preds[:, k] uses only the k pairs before point k (k = 0 predicts 0), computed
in float64 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from probes.errors import IclensError

Xs = Float[torch.Tensor, "batch points d"]
Ys = Float[torch.Tensor, "batch points"]


def _f64(xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return xs.detach().to("cpu", torch.float64), ys.detach().to("cpu", torch.float64)


@dataclass(frozen=True)
class LeastSquares:
    """Minimum-norm least squares w = pinv(X) y on the k examples (the Bayes-optimal for noiseless Gaussian w)."""

    name: str = "least squares"

    def __call__(self, xs: Xs, ys: Ys) -> Ys:
        xs, ys = _f64(xs, ys)
        preds = torch.zeros_like(ys)
        for k in range(1, xs.shape[1]):
            w = torch.linalg.pinv(xs[:, :k]) @ ys[:, :k, None]
            preds[:, k] = (xs[:, k : k + 1] @ w)[:, 0, 0]
        return preds


@dataclass(frozen=True)
class Ridge:
    """Ridge regression w = (X^T X + alpha I)^-1 X^T y (the posterior mean when alpha = noise^2 / w_scale^2)."""

    alpha: float = 0.1
    name: str = "ridge"

    def __post_init__(self) -> None:
        if self.alpha <= 0:
            raise IclensError(f"ridge alpha must be > 0 (got {self.alpha}).")

    def __call__(self, xs: Xs, ys: Ys) -> Ys:
        xs, ys = _f64(xs, ys)
        d = xs.shape[-1]
        preds = torch.zeros_like(ys)
        for k in range(1, xs.shape[1]):
            X, y = xs[:, :k], ys[:, :k]
            A = X.transpose(1, 2) @ X + self.alpha * torch.eye(d, dtype=X.dtype)
            w = torch.linalg.solve(A, (X.transpose(1, 2) @ y[..., None]))
            preds[:, k] = (xs[:, k : k + 1] @ w)[:, 0, 0]
        return preds


@dataclass(frozen=True)
class NearestNeighbours:
    """Mean y of the n_neighbors nearest earlier x (all of them when fewer exist), as in Garg et al."""

    n_neighbors: int = 3
    name: str = "3-NN"

    def __call__(self, xs: Xs, ys: Ys) -> Ys:
        xs, ys = _f64(xs, ys)
        preds = torch.zeros_like(ys)
        for k in range(1, xs.shape[1]):
            dist = torch.cdist(xs[:, k : k + 1], xs[:, :k])[:, 0]  # [batch k]
            m = min(self.n_neighbors, k)
            idx = dist.topk(m, largest=False).indices
            preds[:, k] = ys[:, :k].gather(1, idx).mean(1)
        return preds


def _prefix_xy_mean(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """(1/k) sum_{i<k} y_i x_i for every k ([batch points d]; zero at k = 0)."""
    xy = xs * ys[..., None]
    csum = torch.cumsum(xy, dim=1) - xy
    k = torch.arange(xs.shape[1], dtype=xs.dtype).clamp(min=1)
    return csum / k.view(1, -1, 1)


@dataclass(frozen=True)
class Averaging:
    """w = (1/k) sum y_i x_i: Garg et al.'s averaging estimator (one GD step of size 1 from w = 0)."""

    name: str = "averaging"

    def __call__(self, xs: Xs, ys: Ys) -> Ys:
        xs, ys = _f64(xs, ys)
        return (xs * _prefix_xy_mean(xs, ys)).sum(-1)


@dataclass(frozen=True)
class OneStepGD:
    """One step of gradient descent on the in-context squared loss from w = 0.

    `preconditioner="none"`: w = lr (1/k) sum y_i x_i.  `preconditioner="zfb"`: w = Gamma_k^-1 (1/k) sum y_i x_i
    with Gamma_k = (1 + 1/k) Lambda + tr(Lambda)/k I (Lambda = I unless given), the global-minimum LSA
    predictor of Zhang, Frei & Bartlett Thm 4.1 at prompt length k.
    """

    lr: float = 1.0
    preconditioner: str = "none"
    x_scale: float = 1.0
    name: str = "1-step GD"

    def __post_init__(self) -> None:
        if self.preconditioner not in ("none", "zfb"):
            raise IclensError(f"preconditioner must be 'none' or 'zfb' (got {self.preconditioner!r}).")

    def __call__(self, xs: Xs, ys: Ys) -> Ys:
        xs, ys = _f64(xs, ys)
        g = _prefix_xy_mean(xs, ys)
        if self.preconditioner == "zfb":
            d = xs.shape[-1]
            lam = self.x_scale**2
            k = torch.arange(xs.shape[1], dtype=xs.dtype).clamp(min=1)
            gamma = (1 + 1 / k) * lam + d * lam / k  # Gamma_k = gamma * I for Lambda = x_scale^2 I
            g = g / gamma.view(1, -1, 1)
        else:
            g = self.lr * g
        return (xs * g).sum(-1)


def default_baselines(d: int) -> dict[str, object]:
    """The baselines of the report: least squares, ridge, 3-NN, averaging, preconditioned one-step GD."""
    del d
    return {
        "least squares": LeastSquares(),
        "ridge (0.1)": Ridge(alpha=0.1),
        "3-NN": NearestNeighbours(3),
        "averaging": Averaging(),
        "1-step GD (ZFB precond.)": OneStepGD(preconditioner="zfb"),
    }
