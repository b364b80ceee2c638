"""Helpers for the function-token tests (a module with a unique name: test folders share no conftest imports)."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = "the a of to and in cat dog saw ran big red . , house ball went took".split()


def write_corpus(path: Path, n_lines: int = 120, words_per_line: int = 15, seed: int = 0) -> Path:
    """`n_lines` lines of random words from WORDS (all in the tiny tokenizer's vocabulary)."""
    rng = random.Random(seed)
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(words_per_line)) for _ in range(n_lines)) + "\n")
    return path


def hooks_clean(model) -> bool:
    """True when no HookPoint of the model holds a forward or backward hook."""
    return all(not hp._forward_hooks and not hp._backward_hooks and not getattr(hp, "fwd_hooks", [])
               for hp in model.hook_dict.values())
