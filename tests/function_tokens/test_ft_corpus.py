"""Corpus streaming: file / folder order, BOS + exact length, max_tokens, WikiText cleanup, errors."""

from __future__ import annotations

import pytest

from probes.corpus import CorpusConfig, clean_wikitext, corpus_fingerprint, iter_sequences
from probes.errors import IclensError


def test_sequences_have_bos_exact_length_and_follow_the_text(tiny_model, tmp_path):
    tok = tiny_model.tokenizer
    (tmp_path / "a.txt").write_text("the cat saw the dog .\nthe dog saw a bird .\n")
    seqs = list(iter_sequences(CorpusConfig(source=str(tmp_path / "a.txt"), seq_len=4), tok))
    ids = tok("the cat saw the dog . the dog saw a bird .", add_special_tokens=False)["input_ids"]
    assert [s[0] for s in seqs] == [tok.bos_token_id] * 4  # 12 words -> 4 sequences of BOS + 3
    assert all(len(s) == 4 for s in seqs)
    assert sum((s[1:] for s in seqs), []) == ids


def test_folder_reads_files_in_sorted_order_and_max_tokens_stops(tiny_model, tmp_path):
    tok = tiny_model.tokenizer
    (tmp_path / "b.txt").write_text("dog dog dog\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("red red red\n")
    (tmp_path / "a.txt").write_text("cat cat cat\n")
    (tmp_path / "skip.bin").write_text("ball ball ball\n")
    seqs = list(iter_sequences(CorpusConfig(source=str(tmp_path), seq_len=4), tok))
    words = [tok.convert_ids_to_tokens(s[1:]) for s in seqs]
    assert words == [["cat"] * 3, ["dog"] * 3, ["red"] * 3]
    assert len(list(iter_sequences(CorpusConfig(source=str(tmp_path), seq_len=4, max_tokens=8), tok))) == 2


def test_clean_wikitext_undoes_markup():
    assert clean_wikitext('a guest @-@ starring role , 1 @,@ 000 " Craig " in Teddy \'s ( 2004 ) .') == \
        'a guest-starring role, 1,000 "Craig" in Teddy\'s (2004).'


def test_fingerprint_changes_with_the_text_and_the_cut(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("the cat\n")
    a = corpus_fingerprint(CorpusConfig(source=str(f), seq_len=4))
    assert a == corpus_fingerprint(CorpusConfig(source=str(f), seq_len=4, max_tokens=8))  # budget is not identity
    assert a != corpus_fingerprint(CorpusConfig(source=str(f), seq_len=8))
    f.write_text("the cat and the dog\n")
    assert a != corpus_fingerprint(CorpusConfig(source=str(f), seq_len=4))


def test_bad_sources_raise_one_line_errors(tmp_path):
    with pytest.raises(IclensError, match="does not exist"):
        CorpusConfig(source=str(tmp_path / "missing.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(IclensError, match="no text files"):
        CorpusConfig(source=str(tmp_path / "empty"))
    with pytest.raises(IclensError, match="seq_len"):
        CorpusConfig(source=str(tmp_path), seq_len=1)
