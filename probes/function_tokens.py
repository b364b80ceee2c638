"""Function tokens: a documented word list and the classification of any tokenizer's ids.

Zhang, Lin & Li (2025), "Memory Retrieval and Consolidation in Large Language Models
through Function Tokens", call *function tokens* the high-frequency tokens that carry
grammar rather than content: punctuation, articles, prepositions, conjunctions,
auxiliary verbs, and the model's special tokens. They argue that these tokens
activate most of the predictive features of a middle layer (memory retrieval) and
that training loss is dominated by predicting the content token that follows them
(memory consolidation).

This module fixes one explicit list so results are comparable across models:

- ``special``: the tokenizer's special / added-special tokens (``<bos>``, ``<eos>``,
  ``<pad>``, ``<start_of_turn>``, ``<unusedN>`` ...);
- ``punctuation``: a token whose text, stripped of whitespace, is non-empty and made
  only of Unicode punctuation (P*) or symbol (S*) characters (``,`` ``.`` ``"`` ``$``
  ``)."``), plus whitespace-only tokens (``\\n``, ``\\n\\n``, spaces), which format text;
- ``article`` / ``preposition`` / ``conjunction`` / ``auxiliary``: a token whose text,
  stripped of whitespace and of the word-boundary markers ``▁`` (SentencePiece) and
  ``Ġ`` (byte-level BPE), lower-cased, is in the word lists below;
- a word in two lists takes the first in this order (``since`` is a preposition,
  ``that`` a conjunction);
- everything else is ``content`` (nouns, verbs, adjectives, numbers, word pieces,
  pronouns). Pronouns are left out on purpose: the paper's list does not name them.

Word pieces matter: ``▁the`` and ``the`` are both articles, but ``there`` is content.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import torch
from jaxtyping import Bool

ARTICLES = frozenset("a an the".split())
PREPOSITIONS = frozenset(
    "about above across after against along amid among around as at before behind below beneath beside besides "
    "between beyond by despite down during except for from in inside into like near of off on onto out outside over "
    "past per since than through throughout till to toward towards under underneath unlike until up upon via with "
    "within without".split()
)
CONJUNCTIONS = frozenset(
    "and or but nor so yet because although though while whereas if unless whether either neither both "
    "that".split()
)
AUXILIARIES = frozenset(
    "be am is are was were been being have has had having do does did done can could may might must shall should "
    "will would 's 're 've 'd 'll 'm".split()
)
WORD_CATEGORIES: dict[str, frozenset[str]] = {
    "article": ARTICLES,
    "preposition": PREPOSITIONS,
    "conjunction": CONJUNCTIONS,
    "auxiliary": AUXILIARIES,
}
CATEGORIES = ("special", "punctuation", "article", "preposition", "conjunction", "auxiliary", "content")
FUNCTION_CATEGORIES = frozenset(CATEGORIES[:-1])
_MARKERS = "▁Ġ"


def classify_text(text: str, *, special: bool = False) -> str:
    """Category of one token given its decoded text (see the module docstring for the rules).

    Args:
        text: the token as text (``tokenizer.decode([id])``), markers ``▁``/``Ġ`` allowed.
        special: True when the tokenizer registers the token as special.
    Returns:
        one of CATEGORIES.
    """
    if special:
        return "special"
    word = text.strip().strip(_MARKERS).strip().lower()
    if not word:
        return "punctuation"  # whitespace-only tokens (newlines, spaces) format text
    if all(unicodedata.category(c)[0] in "PS" for c in word):
        return "punctuation"
    for cat, words in WORD_CATEGORIES.items():
        if word in words:
            return cat
    return "content"


def _special_ids(tokenizer) -> set[int]:
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for idx, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
        if getattr(added, "special", False):
            ids.add(int(idx))
    return ids


def token_texts(tokenizer, vocab_size: int | None = None) -> list[str]:
    """Each id's text (one batched decode; about 2 s for Gemma's 262k ids)."""
    n = vocab_size or len(tokenizer)
    return tokenizer.batch_decode([[i] for i in range(n)])


def token_categories(tokenizer, vocab_size: int | None = None) -> list[str]:
    """The category of every token id ``0 .. vocab_size-1`` (default: the tokenizer's size).

    Pass the model's ``cfg.d_vocab`` as `vocab_size` when the embedding is padded beyond
    the tokenizer; padded ids decode to empty text and count as punctuation (never seen
    in text, so this does not change any statistic).
    """
    n = vocab_size or len(tokenizer)
    special = _special_ids(tokenizer)
    return [classify_text(t, special=i in special) for i, t in enumerate(token_texts(tokenizer, n))]


def function_mask_from_categories(categories: Sequence[str]) -> Bool[torch.Tensor, " vocab"]:
    """Boolean mask over token ids: True where the category is a function category."""
    return torch.tensor([c in FUNCTION_CATEGORIES for c in categories], dtype=torch.bool)


def function_token_mask(tokenizer, vocab_size: int | None = None) -> Bool[torch.Tensor, " vocab"]:
    """Boolean mask over token ids: True for function tokens (special, punctuation, closed-class words)."""
    return function_mask_from_categories(token_categories(tokenizer, vocab_size))
