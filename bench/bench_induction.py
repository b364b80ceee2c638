"""Induction scan cost vs a plain transformers forward over the same batch; warm vs cold model load.

Prints ratios measured side by side in this one run (these machines are noisy):
- scan pass 1 (patterns reduced in hooks + loss + DLA) / plain HF forward on the same
  [BOS] R R batch, with the HF model in its default attention and in eager attention;
- the whole scan (pass 1 + the n-gram pass) / plain HF forward;
- cold load (GGUF dequantisation into a fresh cache) / warm load (from the cache).

Usage: python bench/bench_induction.py [--model gemma-3-270m] [--n-prompts 8] [--seq-len 64] [--repeats 3] [--skip-cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--n-prompts", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args()

    from transformers import AutoModelForCausalLM

    from probes import induction
    from probes.induction import ScanConfig
    from probes.models import embedded_cache_dir, load_model
    from probes.prompts import repeated_random_tokens, token_pool

    t = time.perf_counter()
    model = load_model(args.model, device="cpu")
    warm = time.perf_counter() - t
    if not args.skip_cold and args.model in ("gemma-3-270m", "smollm2-135m"):
        with tempfile.TemporaryDirectory() as tmp:
            old = os.environ.get("ICLENS_CACHE")
            os.environ["ICLENS_CACHE"] = tmp
            t = time.perf_counter()
            load_model(args.model, device="cpu")
            cold = time.perf_counter() - t
            if old is None:
                del os.environ["ICLENS_CACHE"]
            else:
                os.environ["ICLENS_CACHE"] = old
        print(f"load: cold {cold:.1f} s (GGUF -> safetensors cache), warm {warm:.1f} s, cold/warm = {cold / warm:.1f}x")
    else:
        print(f"load: warm {warm:.1f} s")

    folder = embedded_cache_dir(args.model)
    hf_default = AutoModelForCausalLM.from_pretrained(folder).eval()
    hf_eager = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    pool = token_pool(model.tokenizer, model.cfg.d_vocab)
    toks = repeated_random_tokens(pool, n_prompts=args.n_prompts, seq_len=args.seq_len, seed=0)
    n_tok = toks.numel()

    def plain(m):
        with torch.inference_mode():
            m(toks)

    cfg = ScanConfig(n_prompts=args.n_prompts, seq_len=args.seq_len, batch_size=args.n_prompts, ngram_orders=())
    full_cfg = ScanConfig(n_prompts=args.n_prompts, seq_len=args.seq_len, batch_size=args.n_prompts)
    plain(hf_default), induction.scan(model, config=cfg)  # warm-up
    t_def, _ = best_of(lambda: plain(hf_default), args.repeats)
    t_eag, _ = best_of(lambda: plain(hf_eager), args.repeats)
    t_bridge, _ = best_of(lambda: plain(model), args.repeats)
    t_scan, _ = best_of(lambda: induction.scan(model, config=cfg), args.repeats)
    t_full, _ = best_of(lambda: induction.scan(model, config=full_cfg), args.repeats)
    print(f"batch {args.n_prompts} x {toks.shape[1]} tokens, {torch.get_num_threads()} threads, best of {args.repeats}")
    print(f"plain HF forward (default attention): {t_def:.2f} s  ({n_tok / t_def:.0f} tok/s)")
    print(f"plain HF forward (eager attention)  : {t_eag:.2f} s  ({n_tok / t_eag:.0f} tok/s)")
    print(f"bridge forward, no hooks            : {t_bridge:.2f} s  ({n_tok / t_bridge:.0f} tok/s)")
    print(f"scan, repeated-token pass           : {t_scan:.2f} s  ({n_tok / t_scan:.0f} tok/s)")
    print(f"scan, both passes (+ n-gram)        : {t_full:.2f} s")
    print(f"RATIO scan pass / plain forward (default attention): {t_scan / t_def:.2f}x")
    print(f"RATIO scan pass / plain forward (eager attention)  : {t_scan / t_eag:.2f}x")
    print(f"RATIO bridge forward / plain forward (eager attention): {t_bridge / t_eag:.2f}x")
    print(f"RATIO scan pass / bridge forward                   : {t_scan / t_bridge:.2f}x")
    print(f"RATIO full scan / plain forward (default attention): {t_full / t_def:.2f}x")


if __name__ == "__main__":
    main()
