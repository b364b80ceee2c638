"""Reddy's classification sampler: vectorised batch sampler vs a straightforward per-sequence loop; training steps/s.

Prints, measured side by side in this one run (these machines are noisy):
- sequences/s of `ClassificationTask.sample` (vectorised over the batch) and of a per-sequence
  loop that draws the same distribution one sequence at a time (as the original code does), and
  their ratio;
- training steps/s of the minimal network (batch 128) with the vectorised sampler, and the share
  of a step the sampler takes.

Usage: python bench/bench_icl_sampler.py [--batch 128] [--repeats 5] [--threads 1] [--train-steps 30]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F


def loop_sample(task, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The same training distribution, one sequence at a time (the baseline the vectorised sampler replaces)."""
    c = task.cfg
    N, L, B = c.n_items, c.n_labels, c.burstiness
    toks, targets = [], []
    for _ in range(n):
        bursty = B > 0 and torch.rand(1, generator=g).item() < c.p_bursty
        novel = torch.rand(1, generator=g).item() < c.p_novel
        if bursty:
            classes = torch.multinomial(task.probs, N // B, replacement=False, generator=g)
            ctx = classes.repeat_interleave(B)[torch.randperm(N, generator=g)]
            query = classes[torch.randint(0, N // B, (1,), generator=g)]
        else:
            ctx = torch.multinomial(task.probs, N, replacement=True, generator=g)
            query = torch.multinomial(task.probs, 1, generator=g)
        seq_cls = torch.cat([ctx, query])
        if novel:
            uniq, inv = seq_cls.unique(return_inverse=True)
            means = (torch.randn(len(uniq), c.dim, generator=g) / math.sqrt(c.dim))[inv]
            labels = torch.randint(0, L, (len(uniq),), generator=g)[inv]
        else:
            means, labels = task.means[seq_cls], seq_cls % L
        items = (means + c.eps * torch.randn(N + 1, c.dim, generator=g) / math.sqrt(c.dim)) / math.sqrt(1 + c.eps ** 2)
        content = torch.empty(c.seq_len, c.dim)
        for j in range(N):
            content[2 * j] = items[j]
            content[2 * j + 1] = task.label_vecs[labels[j]]
        content[2 * N] = items[N]
        off = torch.randint(0, c.pos_dim - c.seq_len + 1, (1,), generator=g).item()
        pos = F.one_hot(torch.arange(c.seq_len) + off, c.pos_dim).float()
        toks.append(torch.cat([pos, content], -1))
        targets.append(labels[N])
    return {"tokens": torch.stack(toks), "target": torch.stack(targets)}


def rate(fn, n_items: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n_items / best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-steps", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from toy_models.classifier import minimal_classifier
    from toy_models.tasks.classification import ClassificationTask

    task = ClassificationTask(n_classes=2048, burstiness=4, zipf_alpha=1.0, p_bursty=0.9, p_novel=0.1)
    g = torch.Generator().manual_seed(0)
    vec = rate(lambda: task.sample(args.batch, g), args.batch, args.repeats)
    loop = rate(lambda: loop_sample(task, args.batch, g), args.batch, args.repeats)
    print(f"sampler, batch {args.batch}: vectorised {vec:,.0f} seq/s, per-sequence loop {loop:,.0f} seq/s, "
          f"ratio {vec / loop:.1f}x")

    model = minimal_classifier(task.cfg, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        batch = task.sample(args.batch, g)
        loss = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    sps = args.train_steps / (time.perf_counter() - t)
    print(f"training (minimal network, batch {args.batch}, {args.threads} thread(s)): {sps:.1f} steps/s; "
          f"sampling is {100 * sps / (vec / args.batch):.0f}% of a step with the vectorised sampler, "
          f"a batch from the loop alone would take {100 * sps / (loop / args.batch):.0f}% of that step time")


if __name__ == "__main__":
    main()
