"""Shared fixtures: tiny random models for logic tests, the embedded model for the few marked tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from probes.models import load_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model():
    """2-layer random Llama bridge (d_model 32, 4 heads) with a word-level tokenizer."""
    return load_model("tiny-llama", device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2():
    """2-layer random GPT-2 bridge (d_model 32, 4 heads)."""
    return load_model("tiny-gpt2", device="cpu")


@pytest.fixture(scope="session")
def gemma():
    """The embedded default model (converted once, then cached under $ICLENS_CACHE)."""
    return load_model("gemma-3-270m", device="cpu")


@pytest.fixture(scope="session")
def wikitext_path() -> Path:
    """Natural text shared beside the project; tests needing it skip when absent."""
    path = SHARED_DATA / "wikitext103_test.tokens"
    if not path.exists():
        pytest.skip(f"natural-text sample {path} not present")
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


def pytest_configure(config):
    # Two cores: more intra-op threads than cores only adds contention.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
