"""Fixtures for the function-token tests: a small word-level corpus, a hook check, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from ft_testkit import hooks_clean, write_corpus


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """120 lines of 15 random words from an 18-word vocabulary (all in the tiny tokenizer)."""
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
