"""Activation caching and SAE training: early-stop speed-up, SAE throughput, flat peak memory.

1. Tokens/s of collecting ``blocks.L.hook_resid_pre`` with ``stop_at_layer=L`` vs a
   full forward (logits included) on the same batches, side by side; the ratio is
   large for Gemma 3 270M, whose 262k-token unembedding is most of a forward pass.
2. SAE training throughput (tokens/s) for d_in = the model's d_model, expansion 8, TopK k=32.
3. Peak resident memory of `collect_activations` caching N tokens vs 4N tokens of a
   synthetic corpus (tiny-llama, each size in a fresh subprocess): the ratio must stay
   near 1 (one shard in memory at a time), whatever N.

Usage: python bench/bench_activations.py [--model gemma-3-270m] [--layer 6] [--batches 3]
       [--mem-tokens 250000]   (memory part: N and 4N; 250000 -> 1M tokens)
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402


def speed(model_name: str, layer: int, batches: int, batch_size: int, seq_len: int) -> None:
    from probes.models import load_model

    model = load_model(model_name, device="cpu")
    g = torch.Generator().manual_seed(0)
    toks = [torch.randint(100, min(model.cfg.d_vocab, 30000), (batch_size, seq_len), generator=g) for _ in range(batches)]
    n = batches * batch_size * seq_len
    with torch.inference_mode():
        model(toks[0][:1, :8])  # warm-up
        t = time.perf_counter()
        for b in toks:
            model(b, stop_at_layer=layer)
        t_stop = time.perf_counter() - t
        t = time.perf_counter()
        for b in toks:
            model(b)
        t_full = time.perf_counter() - t
    print(f"[collect] {model_name} layer {layer}: stop_at_layer {n / t_stop:,.0f} tok/s, full forward {n / t_full:,.0f} tok/s"
          f" -> speed-up x{t_full / t_stop:.1f}")
    from probes.sae import SAEConfig, SparseAutoencoder

    cfg = SAEConfig(d_in=model.cfg.d_model, expansion=8, k=32)
    sae = SparseAutoencoder(cfg)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    x = torch.randn(cfg.batch_size, cfg.d_in)
    steps = 5
    t = time.perf_counter()
    for _ in range(steps):
        loss = (sae(x) - x).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t
    print(f"[sae] d_in {cfg.d_in} x{cfg.expansion} TopK k={cfg.k}: {steps * cfg.batch_size / dt:,.0f} tokens/s training "
          f"(vs collection at the layer: {(steps * cfg.batch_size / dt) / (n / t_stop):.2f}x)")


def _peak_mb() -> float:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss it does not inherit a forking parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(tokens: int, folder: str) -> None:
    """Cache `tokens` tokens of a synthetic word corpus with tiny-llama; print peak RSS (MB) as JSON."""
    from probes.activations import ActivationConfig, collect_activations
    from probes.corpus import CorpusConfig
    from probes.models import TINY_WORDS, load_model

    torch.set_num_threads(1)
    model = load_model("tiny-llama", device="cpu")
    rng = random.Random(0)
    path = Path(folder) / "corpus.txt"
    with open(path, "w") as f:  # written line by line: the corpus itself never sits in memory
        for _ in range(tokens // 20 + 10):
            f.write(" ".join(rng.choice(TINY_WORDS) for _ in range(20)) + "\n")
    base = _peak_mb()
    t = time.perf_counter()
    store = collect_activations(model, CorpusConfig(source=str(path), seq_len=128, max_tokens=tokens), Path(folder) / "acts",
                                ActivationConfig(layer=1, batch_size=16, shard_sequences=64), progress=False)
    dt = time.perf_counter() - t
    peak = _peak_mb()
    print(json.dumps({"tokens": store.n_tokens, "peak_mb": peak, "before_mb": base, "seconds": dt,
                      "disk_mb": sum(p.stat().st_size for p in store.shards) / 2**20}))


def memory(tokens: int) -> None:
    rows = []
    for n in (tokens, 4 * tokens):
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, __file__, "--child", str(n), tmp], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in rows:
        print(f"[memory] cached {r['tokens']:,} tokens ({r['disk_mb']:.0f} MB on disk) in {r['seconds']:.0f} s: "
              f"peak RSS {r['peak_mb']:.0f} MB (before caching {r['before_mb']:.0f} MB)")
    print(f"[memory] peak RSS at 4N / at N = {rows[1]['peak_mb'] / rows[0]['peak_mb']:.2f} (flat = 1.0)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--mem-tokens", type=int, default=250_000)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(int(a.child[0]), a.child[1])
        return
    torch.set_num_threads(1)
    memory(a.mem_tokens)  # first: the children should not fork from a process holding a model
    if not a.skip_speed:
        speed(a.model, a.layer, a.batches, a.batch_size, a.seq_len)


if __name__ == "__main__":
    main()
