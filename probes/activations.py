"""Residual-stream activations of a corpus, cached to disk in safetensors shards.

The corpus (`probes.corpus.iter_sequences`) streams through the model in batches;
the forward pass stops at the layer read (``model(tokens, stop_at_layer=L)`` returns
``blocks.L.hook_resid_pre``, the residual stream entering block L), so nothing after
it runs: for Gemma 3 270M the 262k-token unembedding alone is more than half the
compute of a full forward. Each shard holds ``shard_sequences`` whole sequences:

    OUT/shard_00000.safetensors   acts [seq pos d_model] (storage dtype), tokens [seq pos] int32
    OUT/meta.json                 model, layer, corpus fingerprint, shapes, complete?

Only one shard is ever held in memory, so peak memory is flat in the corpus size.
A shard is written to a temp file and renamed into place, so after a kill every
``shard_*.safetensors`` on disk is whole; a rerun skips the sequences those shards
hold (the corpus stream is deterministic) and continues. Shard boundaries fall on
batch boundaries, so a resumed cache is bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from probes.corpus import CorpusConfig, corpus_fingerprint, iter_sequences
from probes.errors import IclensError
from probes.results import atomic_write_text

META = "meta.json"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True, kw_only=True)
class ActivationConfig:
    """How activations are collected and stored.

    Attributes:
        layer: read ``blocks.{layer}.hook_resid_pre`` (0 = embeddings), 0 <= layer < n_layers.
        batch_size: sequences per forward pass.
        shard_sequences: sequences per shard file; a multiple of batch_size.
        dtype: storage dtype (float32, float16, bfloat16); float16 halves disk.
    """

    layer: int
    batch_size: int = 8
    shard_sequences: int = 64
    dtype: str = "float32"

    def __post_init__(self):
        if self.layer < 0:
            raise IclensError(f"layer must be >= 0 (got {self.layer}).")
        if self.batch_size < 1 or self.shard_sequences < 1:
            raise IclensError("batch_size and shard_sequences must be >= 1.")
        if self.shard_sequences % self.batch_size:
            raise IclensError(f"shard_sequences ({self.shard_sequences}) must be a multiple of batch_size "
                              f"({self.batch_size}) so a resumed cache equals an uninterrupted one.")
        if self.dtype not in _DTYPES:
            raise IclensError(f"dtype {self.dtype!r} unknown: use one of {', '.join(_DTYPES)}.")


def shard_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"shard_{index:05d}.safetensors"


class ActivationStore:
    """Read side of a shard folder: metadata, shards one at a time, flattened token batches."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            self.meta: dict[str, Any] = json.loads((self.folder / META).read_text())
        except (OSError, ValueError):
            raise IclensError(f"{self.folder} holds no activation cache ({META} missing): run collect_activations first.") from None
        self.shards = _whole_shards(self.folder)

    @property
    def layer(self) -> int:
        return int(self.meta["layer"])

    @property
    def d_model(self) -> int:
        return int(self.meta["d_model"])

    @property
    def seq_len(self) -> int:
        return int(self.meta["seq_len"])

    @property
    def has_bos(self) -> bool:
        return bool(self.meta["bos"])

    @property
    def n_sequences(self) -> int:
        return int(self.meta.get("n_sequences", 0))

    @property
    def n_tokens(self) -> int:
        return self.n_sequences * self.seq_len

    def load_shard(self, i: int) -> tuple[Float[torch.Tensor, "batch pos d_model"], Int[torch.Tensor, "batch pos"]]:
        """(acts as float32, token ids as int64) of shard `i`."""
        data = load_file(str(self.shards[i]))
        return data["acts"].float(), data["tokens"].long()

    def iter_shards(self, order: Sequence[int] | None = None):
        for i in order if order is not None else range(len(self.shards)):
            yield self.load_shard(i)

    def iter_tokens(self, *, skip_bos: bool = True, max_sequences: int | None = None
                    ) -> Iterator[tuple[Float[torch.Tensor, "batch d_model"], Int[torch.Tensor, " batch"]]]:
        """Shard by shard: (acts [n, d_model], token ids [n]) flattened over sequences and positions.

        `skip_bos` drops position 0 when sequences start with BOS: its residual is an
        attention-sink outlier (norm ~10x the rest in Gemma) that would dominate an SAE.
        """
        start = 1 if (skip_bos and self.has_bos) else 0
        seen = 0
        for acts, toks in self.iter_shards():
            if max_sequences is not None:
                acts, toks = acts[: max_sequences - seen], toks[: max_sequences - seen]
            seen += len(toks)
            yield acts[:, start:].reshape(-1, acts.shape[-1]), toks[:, start:].reshape(-1)
            if max_sequences is not None and seen >= max_sequences:
                return

    def sequences(self, n: int) -> Int[torch.Tensor, "batch pos"]:
        """The first `n` token sequences of the cache (fewer if it holds fewer)."""
        out, have = [], 0
        for i in range(len(self.shards)):
            toks = load_file(str(self.shards[i]))["tokens"].long()
            out.append(toks[: n - have])
            have += len(out[-1])
            if have >= n:
                break
        return torch.cat(out) if out else torch.zeros(0, self.seq_len, dtype=torch.long)


def _whole_shards(folder: Path) -> list[Path]:
    shards = []
    while shard_path(folder, len(shards)).exists():
        shards.append(shard_path(folder, len(shards)))
    return shards


def _meta_for(model, corpus: CorpusConfig, cfg: ActivationConfig) -> dict[str, Any]:
    return {
        "model": str(model.cfg.model_name), "layer": cfg.layer, "hook": f"blocks.{cfg.layer}.hook_resid_pre",
        "d_model": int(model.cfg.d_model), "seq_len": corpus.seq_len, "corpus": str(corpus.source),
        "fingerprint": corpus_fingerprint(corpus), "shard_sequences": cfg.shard_sequences,
        "batch_size": cfg.batch_size, "dtype": cfg.dtype,
        "bos": bool(corpus.prepend_bos and model.tokenizer.bos_token_id is not None),
    }


_IDENTITY_KEYS = ("model", "layer", "d_model", "seq_len", "fingerprint", "shard_sequences", "batch_size", "dtype", "bos")


def _check_resume(folder: Path, want: dict[str, Any]) -> dict[str, Any] | None:
    path = folder / META
    if not path.exists():
        return None
    have = json.loads(path.read_text())
    diff = [k for k in _IDENTITY_KEYS if have.get(k) != want.get(k)]
    if diff:
        raise IclensError(f"{folder} already caches different activations ({', '.join(diff)} differ): "
                          "pass another output folder or delete that one.")
    return have


def _write_meta(folder: Path, meta: dict[str, Any]) -> None:
    atomic_write_text(folder / META, json.dumps(meta, indent=1) + "\n")


def _batches(seqs: Iterator[list[int]], size: int) -> Iterator[list[list[int]]]:
    batch: list[list[int]] = []
    for s in seqs:
        batch.append(s)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def collect_activations(model, corpus: CorpusConfig, out_dir: str | os.PathLike, cfg: ActivationConfig, *,
                        progress: bool = True, device: torch.device | str | None = None) -> ActivationStore:
    """Stream `corpus` through `model` and cache ``blocks.{layer}.hook_resid_pre`` in shards.

    Resumes from the whole shards already in `out_dir` (same model, layer, corpus and
    settings; otherwise IclensError). Hooks the caller has added to the model (e.g. a
    planted feature) stay active during collection.

    Returns:
        an `ActivationStore` over `out_dir`.
    """
    if cfg.layer >= model.cfg.n_layers:
        raise IclensError(f"layer {cfg.layer} is out of range: {model.cfg.model_name} has layers 0..{model.cfg.n_layers - 1}.")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for stray in folder.glob(".shard_*.tmp"):
        stray.unlink()  # a shard being written when the run was killed
    meta = _meta_for(model, corpus, cfg)
    old = _check_resume(folder, meta)
    shards = _whole_shards(folder)
    n_done = sum(len(load_file(str(p))["tokens"]) for p in shards)
    want = corpus.max_sequences
    if old and old.get("complete") and old.get("n_sequences") == n_done and \
            (want is None or n_done >= want or old.get("exhausted")):
        return ActivationStore(folder)
    if shards and n_done % cfg.shard_sequences:  # a short tail shard from a smaller --max-tokens: redo it
        shards[-1].unlink()
        n_done -= n_done % cfg.shard_sequences
        shards = shards[:-1]
    meta.update(complete=False, exhausted=False, n_sequences=n_done)
    _write_meta(folder, meta)

    dev = torch.device(device) if device is not None else next(model.parameters()).device
    store_dtype = _DTYPES[cfg.dtype]
    seqs = iter_sequences(corpus, model.tokenizer)
    for _ in range(n_done):  # skip what the whole shards hold; tokenising is cheap next to the model
        if next(seqs, None) is None:
            break
    bar = tqdm(total=want, initial=n_done, unit="seq", desc=f"activations L{cfg.layer}", disable=not progress)
    buf_acts: list[torch.Tensor] = []
    buf_toks: list[torch.Tensor] = []
    index = len(shards)

    def flush():
        nonlocal index, n_done, buf_acts, buf_toks
        if not buf_toks:
            return
        tensors = {"acts": torch.cat(buf_acts).contiguous(), "tokens": torch.cat(buf_toks).to(torch.int32).contiguous()}
        tmp = folder / f".shard_{index:05d}.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, shard_path(folder, index))
        index += 1
        n_done += len(tensors["tokens"])
        buf_acts, buf_toks = [], []
        meta["n_sequences"] = n_done
        _write_meta(folder, meta)

    try:
        with torch.inference_mode():
            for batch in _batches(seqs, cfg.batch_size):
                toks = torch.tensor(batch, dtype=torch.long, device=dev)
                resid = model(toks, stop_at_layer=cfg.layer)
                buf_acts.append(resid.detach().to("cpu", store_dtype))
                buf_toks.append(toks.cpu())
                bar.update(len(batch))
                if sum(len(t) for t in buf_toks) >= cfg.shard_sequences:
                    flush()
        flush()
    finally:
        bar.close()
    meta["complete"] = True
    meta["exhausted"] = want is None or n_done < want  # the corpus ended before the budget
    _write_meta(folder, meta)
    if n_done == 0:
        raise IclensError(f"corpus {corpus.source} yields no whole sequence of {corpus.seq_len} tokens: "
                          "pass more text or a shorter sequence length.")
    return ActivationStore(folder)


@torch.no_grad()
def activation_mean(store: ActivationStore, *, max_sequences: int | None = None) -> Float[torch.Tensor, " d_model"]:
    """Mean activation over the cache (positions after BOS), e.g. for mean-ablation baselines."""
    total = torch.zeros(store.d_model, dtype=torch.float64)
    n = 0
    for x, _ in store.iter_tokens(max_sequences=max_sequences):
        total += x.double().sum(0)
        n += len(x)
    return (total / max(n, 1)).float()
