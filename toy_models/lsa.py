"""Single-layer linear self-attention (LSA) in the exact form of Zhang, Frei & Bartlett 2023.

"Trained transformers learn linear models in-context" (JMLR 2024), eq. (3)-(5): the
prompt is the embedding matrix

    E = [[x_1 ... x_N  x_q],
         [y_1 ... y_N   0 ]]          in R^{(d+1) x (N+1)},

the layer is  f(E) = E + W^PV E (M E^T W^KQ E) / N  with M = diag(I_N, 0) (the
query column is masked out of the keys), and the prediction is the entry
f(E)[d+1, N+1] (0-based `[d, N]`). Their initialisation (Assumption 3.3):

    W^PV(0) = [[0, 0], [0, sigma]],   W^KQ(0) = [[sigma Theta Theta^T, 0], [0, 0]],
    with ||Theta Theta^T||_F = 1.

Gradient flow from there converges to the global minimum whose prediction is
x_q^T Gamma^-1 (1/N sum_i y_i x_i) with Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I
(Theorem 4.1); `closed_form_gamma_inv` gives that matrix and
`effective_matrix` reads the learned counterpart u * W^KQ_11 off the weights.

`predict(xs, ys)` evaluates the same layer at every prefix (prompt length k uses
1/k), so the LSA shares the call signature of the baselines and the GPT model.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from probes.errors import IclensError


class LinearSelfAttention(HookedRootModule):
    """The ZFB LSA layer with full (d+1) x (d+1) matrices W_PV and W_KQ.

    Hooks: `hook_embed` (E, [batch d+1 N+1]), `hook_kq` (E^T W^KQ E [batch N+1 N+1],
    the un-normalised attention scores) and `hook_out` (f(E)).
    """

    def __init__(self, d: int, *, sigma: float = 0.1, seed: int | None = None):
        super().__init__()
        if d < 1:
            raise IclensError(f"LSA dimension d must be >= 1 (got {d}).")
        if sigma <= 0:
            raise IclensError(f"LSA init scale sigma must be > 0 (got {sigma}).")
        self.d, self.sigma = d, sigma
        self.W_PV = nn.Parameter(torch.zeros(d + 1, d + 1))
        self.W_KQ = nn.Parameter(torch.zeros(d + 1, d + 1))
        self.hook_embed = HookPoint()
        self.hook_kq = HookPoint()
        self.hook_out = HookPoint()
        self.init_weights(seed)
        self.setup()

    def init_weights(self, seed: int | None = None) -> None:
        """ZFB initialisation with a random Theta normalised so ||Theta Theta^T||_F = 1."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        theta = torch.randn(self.d, self.d, generator=gen)
        tt = theta @ theta.T
        tt = tt / torch.linalg.matrix_norm(tt)
        with torch.no_grad():
            self.W_PV.zero_()
            self.W_KQ.zero_()
            self.W_PV[self.d, self.d] = self.sigma
            self.W_KQ[: self.d, : self.d] = self.sigma * tt

    def forward(self, E: Float[torch.Tensor, "batch d1 n1"]) -> Float[torch.Tensor, "batch d1 n1"]:
        """f(E) = E + W^PV E M E^T W^KQ E / N for prompts E [batch d+1 N+1] (query in the last column)."""
        E = self.hook_embed(E)
        n = E.shape[-1] - 1
        if n < 1:
            raise IclensError("an LSA prompt needs at least one in-context example (N >= 1).")
        ctx = E[..., :n]
        scores = self.hook_kq(E.transpose(-1, -2) @ self.W_KQ @ E)  # [batch N+1 N+1], key i query j
        return self.hook_out(E + self.W_PV @ ctx @ scores[..., :n, :] / n)

    @staticmethod
    def embed(xs: Float[torch.Tensor, "batch points d"], ys: Float[torch.Tensor, "batch points"]) -> Float[
            torch.Tensor, "batch d1 points"]:
        """Stack prompts into E; the last point is the query, its y is zeroed."""
        ys = ys.clone()
        ys[:, -1] = 0
        return torch.cat([xs, ys.unsqueeze(-1)], dim=-1).transpose(1, 2)

    def predict(self, xs: Float[torch.Tensor, "batch points d"], ys: Float[torch.Tensor, "batch points"]) -> Float[
            torch.Tensor, "batch points"]:
        """Prediction of y_k from the k earlier points, for every k (k = 0 predicts 0).

        Equals `forward(embed(xs[:, :k+1], ys[:, :k+1]))[:, d, k]` for each k, in one pass.
        """
        d = self.d
        z = torch.cat([xs, ys.unsqueeze(-1)], dim=-1)  # [batch points d+1]
        outer = torch.einsum("bpi,bpj->bpij", z, z)
        csum = torch.cumsum(outer, dim=1) - outer  # sum over i < k
        k = torch.arange(xs.shape[1], device=xs.device, dtype=xs.dtype).clamp(min=1)
        C = csum / k.view(1, -1, 1, 1)
        q = torch.cat([xs, torch.zeros_like(ys).unsqueeze(-1)], dim=-1)  # query columns (x_k, 0)
        # row d of W_PV C W_KQ q
        return torch.einsum("i,bpij,jl,bpl->bp", self.W_PV[d], C, self.W_KQ, q)

    def effective_matrix(self) -> Float[torch.Tensor, "d d"]:
        """The matrix A with prediction x_q^T A (1/N sum y_i x_i) where the zero blocks stay zero: (u W11)^T."""
        d = self.d
        return (self.W_PV[d, d] * self.W_KQ[:d, :d]).T.detach()


def closed_form_gamma_inv(Lambda: Float[torch.Tensor, "d d"], n: int) -> Float[torch.Tensor, "d d"]:
    """Gamma^-1 with Gamma = (1 + 1/N) Lambda + tr(Lambda)/N I: the global-minimum LSA predictor (ZFB Thm 4.1)."""
    d = Lambda.shape[0]
    gamma = (1 + 1 / n) * Lambda + torch.trace(Lambda) / n * torch.eye(d, dtype=Lambda.dtype)
    return torch.linalg.inv(gamma)


def closed_form_isotropic(d: int, n: int) -> dict[str, float]:
    """For Lambda = I: the learned scale N/(N+d+1) and the test error d(d+1)/(N+d+1) at M = N."""
    return {"scale": n / (n + d + 1), "test_error": d * (d + 1) / (n + d + 1)}
