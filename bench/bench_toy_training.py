"""Training steps/s of the GPT-style toy preset vs the same model built on `transformers.GPT2Model`.

Garg et al.'s reference implementation wraps `GPT2Model` between a linear read-in and
read-out; this builds that model with the same shape (layers, heads, width, MLP 4x, no
dropout) and times full AdamW training steps (forward, backward, update) of both on the
same batches of interleaved linear-regression prompts, alternating rounds so machine
noise hits both alike. Prints steps/s of each and the ratio (ours / GPT2Model; > 1 means
faster). Usage: python bench/bench_toy_training.py [--d 5] [--steps 60] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from toy_models.linreg_experiment import LinRegRunConfig, build_model
from toy_models.tasks.linreg import LinRegConfig, interleave, sample_prompts


class GPT2Regressor(nn.Module):
    """Garg et al.'s TransformerModel: Linear read-in -> GPT2Model(inputs_embeds) -> Linear read-out."""

    def __init__(self, d: int, n_points: int, n_layers: int, n_heads: int, d_model: int):
        super().__init__()
        from transformers import GPT2Config, GPT2Model

        cfg = GPT2Config(n_positions=2 * n_points, n_embd=d_model, n_layer=n_layers, n_head=n_heads, vocab_size=1,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False, bos_token_id=0,
                         eos_token_id=0)
        self.read_in = nn.Linear(d, d_model)
        self.backbone = GPT2Model(cfg)
        self.read_out = nn.Linear(d_model, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.read_out(self.backbone(inputs_embeds=self.read_in(tokens)).last_hidden_state)


def time_steps(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t0 = time.perf_counter()
    for tokens, ys in batches:
        pred = model(tokens)[:, 0::2, 0]
        loss = ((pred - ys) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(batches) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=5)
    ap.add_argument("--n-layers", type=int, default=5)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-heads", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = LinRegRunConfig(model="gpt", d=args.d, n_layers=args.n_layers, n_heads=args.n_heads, d_model=args.d_model,
                          attn_only=False)  # GPT2Model has MLPs: compare the full block
    ours = build_model(cfg)
    ref = GPT2Regressor(args.d, cfg.n_points, args.n_layers, args.n_heads, args.d_model)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in ref.parameters() if p is not ref.backbone.wte.weight)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(args.steps):
        xs, ys = sample_prompts(LinRegConfig(d=args.d, n_points=cfg.n_points), args.batch_size, gen)
        batches.append((interleave(xs, ys), ys))
    time_steps(ours, batches[:5])  # warm-up
    time_steps(ref, batches[:5])
    rates_ours, rates_ref = [], []
    for _ in range(args.rounds):
        rates_ours.append(time_steps(ours, batches))
        rates_ref.append(time_steps(ref, batches))
    o, r = statistics.median(rates_ours), statistics.median(rates_ref)
    print(f"preset: d={args.d}, {args.n_layers} layers, {args.n_heads} heads, d_model {args.d_model}, batch "
          f"{args.batch_size} x {2 * cfg.n_points} tokens, {args.threads} thread(s); params ours {n_ours}, "
          f"GPT2Model {n_ref}")
    print(f"ToyTransformer : {o:8.1f} steps/s (median of {args.rounds} rounds of {args.steps})")
    print(f"GPT2Model      : {r:8.1f} steps/s")
    print(f"ratio ours / GPT2Model: {o / r:.2f}x")


if __name__ == "__main__":
    main()
