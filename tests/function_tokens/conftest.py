"""Fixtures for the function-token tests: a small word-level corpus for the tiny models, a hook check."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

WORDS = "the a of to and in cat dog saw ran big red . , house ball went took".split()


def write_corpus(path: Path, n_lines: int = 120, words_per_line: int = 15, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(words_per_line)) for _ in range(n_lines)) + "\n")
    return path


def hooks_clean(model) -> bool:
    """True when no HookPoint of the model holds a forward or backward hook."""
    return all(not hp._forward_hooks and not hp._backward_hooks and not getattr(hp, "fwd_hooks", [])
               for hp in model.hook_dict.values())


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """120 lines of 15 random words from a 18-word vocabulary (all in the tiny tokenizer)."""
    return write_corpus(tmp_path / "corpus.txt")


@pytest.fixture
def clean_hooks():
    return hooks_clean


@pytest.fixture(autouse=True)
def _one_thread():
    """These tests run many small matmuls: on shared cores one thread is several times faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
