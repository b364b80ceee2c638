"""Function-token classification for any tokenizer."""

from __future__ import annotations

import pytest

from probes.function_tokens import classify_text, function_token_mask, token_categories


@pytest.mark.parametrize("text,cat", [
    ("▁the", "article"), ("Ġan", "article"), (" of", "preposition"), ("▁and", "conjunction"), ("▁was", "auxiliary"),
    ("'s", "auxiliary"), (",", "punctuation"), (").", "punctuation"), ("\n\n", "punctuation"), ("$", "punctuation"),
    ("▁there", "content"), ("the_", "content"), ("cat", "content"), ("1990", "content"), ("▁The", "article"),
    ("▁since", "preposition"), ("▁he", "content"),
])
def test_classify_text(text, cat):
    assert classify_text(text) == cat


def test_special_flag_wins():
    assert classify_text("the", special=True) == "special"


def test_tiny_tokenizer_categories(tiny_model):
    tok = tiny_model.tokenizer
    cats = token_categories(tok)
    by = {tok.convert_ids_to_tokens(i): c for i, c in enumerate(cats)}
    assert by["<bos>"] == by["<pad>"] == "special"
    assert (by["the"], by["of"], by["and"], by["is"], by["."], by["cat"], by["paris"]) == \
        ("article", "preposition", "conjunction", "auxiliary", "punctuation", "content", "content")
    mask = function_token_mask(tok)
    assert mask.shape == (len(tok),) and bool(mask[tok.convert_tokens_to_ids("the")]) and not bool(mask[tok.convert_tokens_to_ids("dog")])


@pytest.mark.embedded
def test_gemma_categories(gemma):
    tok = gemma.tokenizer
    cats = token_categories(tok, gemma.cfg.d_vocab)
    ids = tok("The cat sat on the mat, and", add_special_tokens=True)["input_ids"]
    assert [cats[i] for i in ids] == ["special", "article", "content", "content", "preposition", "article", "content",
                                      "punctuation", "conjunction"]
    share = sum(c != "content" for c in cats) / len(cats)
    assert 0.005 < share < 0.2  # a closed class: a small minority of a 262k vocabulary
