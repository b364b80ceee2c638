"""load_model: tiny models, local folders, bad names, cache integrity."""

from __future__ import annotations

import json

import pytest
import torch

from probes import models
from probes.errors import IclensError
from probes.models import load_model


def test_tiny_model_is_a_hooked_bridge(tiny_model):
    assert tiny_model.cfg.n_layers == 2 and tiny_model.cfg.n_heads == 4
    toks = tiny_model.to_tokens("the cat saw the dog")
    _, cache = tiny_model.run_with_cache(toks, names_filter=lambda n: n.endswith("hook_pattern"))
    pat = cache["blocks.1.attn.hook_pattern"]
    assert pat.shape == (1, 4, toks.shape[1], toks.shape[1])
    torch.testing.assert_close(pat.sum(-1), torch.ones_like(pat.sum(-1)))
    assert torch.all(pat.triu(1) == 0), "causal pattern must not look ahead"


def test_unknown_model_lists_embedded_models():
    with pytest.raises(IclensError) as e:
        load_model("definitely-not-a-model", device="cpu")
    assert "gemma-3-270m" in str(e.value) and "smollm2-135m" in str(e.value)
    assert "\n" not in str(e.value)


def test_unreachable_hf_id_gives_one_line_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(IclensError) as e:
        load_model("no-such-org/no-such-model-xyz", device="cpu")
    assert "embedded models" in str(e.value) and "\n" not in str(e.value)


def test_local_folder_loads_same_logits(tmp_path, tiny_model):
    hf, tok = models.load_hf("tiny-llama")
    hf.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    m2 = load_model(str(tmp_path / "m"), device="cpu")
    toks = tiny_model.to_tokens("mary gave the ball to john")
    torch.testing.assert_close(m2(toks), tiny_model(toks))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(IclensError, match="config.json"):
        load_model(str(tmp_path), device="cpu")


def test_partial_cache_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("ICLENS_CACHE", str(tmp_path))
    folder = models.embedded_cache_dir("gemma-3-270m")
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * 100)
    (folder / models.MANIFEST).write_text(json.dumps({"files": {"model.safetensors": 1000}}))
    assert not models.is_cached("gemma-3-270m"), "a truncated weights file must not count as cached"
    (folder / models.MANIFEST).write_text(json.dumps({"files": {"model.safetensors": 100}}))
    assert models.is_cached("gemma-3-270m")


def test_device_auto_is_cpu_without_cuda():
    if torch.cuda.is_available():
        assert models.resolve_device("auto").type == "cuda"
    else:
        assert models.resolve_device("auto").type in ("cpu", "mps")
        with pytest.raises(IclensError):
            models.resolve_device("cuda")


def test_available_models_reports_installed_packages_without_assembling(tmp_path, monkeypatch):
    monkeypatch.setenv("ICLENS_CACHE", str(tmp_path))
    rows = {r["name"]: r for r in models.available_models()}
    assert rows["gemma-3-270m"]["installed"] and rows["smollm2-135m"]["installed"]
    assert not rows["gemma-3-270m"]["cached"]
    assert not (tmp_path / "gguf").exists(), "listing models must not copy the GGUF parts"
