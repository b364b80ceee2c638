"""Text corpora as a deterministic stream of fixed-length token sequences.

A corpus is a text file, a folder of text files (``*.txt``, ``*.md``, ``*.tokens``,
``*.text``; read in sorted path order, recursively), or a Hugging Face dataset named
``hf:NAME[:CONFIG][@SPLIT]`` (streamed through the `datasets` package where it is
installed and the hub is reachable). Text is read in blocks of lines, never whole, so
a corpus of any size streams in constant memory.

Tokenisation: each block of lines is tokenised without special tokens and appended
to one running stream of ids; the stream is cut into sequences of ``seq_len`` tokens,
each starting with the model's BOS token (when it has one) followed by
``seq_len - 1`` text tokens. The sequence order depends only on the corpus and the
tokenizer, so sequence number ``n`` is always the same sequence: that is what lets an
activation cache resume after a kill by skipping the sequences it already holds.

WikiText's word-level markup (`` @-@ ``, `` @,@ ``, spaces before punctuation) is
undone by `clean_wikitext` when the file name contains ``wikitext`` (or when asked),
so that subword models see ordinary text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from probes.errors import IclensError

TEXT_SUFFIXES = (".txt", ".md", ".tokens", ".text", ".raw")
_BLOCK_CHARS = 1 << 16


@dataclass(frozen=True, kw_only=True)
class CorpusConfig:
    """Where text comes from and how it is cut.

    Attributes:
        source: a text file, a folder of text files, or ``hf:NAME[:CONFIG][@SPLIT]``.
        seq_len: tokens per sequence, BOS included (>= 2).
        max_tokens: stop after this many tokens (whole sequences; None = whole corpus).
        wikitext: undo WikiText markup; None = when the file name contains "wikitext".
        prepend_bos: start every sequence with the tokenizer's BOS token when it has one.
    """

    source: str
    seq_len: int = 128
    max_tokens: int | None = None
    wikitext: bool | None = None
    prepend_bos: bool = True

    def __post_init__(self):
        if self.seq_len < 2:
            raise IclensError(f"seq_len must be >= 2 (got {self.seq_len}): pass a longer sequence length.")
        if self.max_tokens is not None and self.max_tokens < self.seq_len:
            raise IclensError(f"max_tokens ({self.max_tokens}) is below one sequence ({self.seq_len}): raise --max-tokens.")
        if not str(self.source).startswith("hf:"):
            path = Path(self.source).expanduser()
            if not path.exists():
                raise IclensError(f"corpus {path} does not exist: pass a text file, a folder of .txt files, or hf:NAME.")
            if path.is_dir() and not text_files(path):
                raise IclensError(f"folder {path} holds no text files ({', '.join(TEXT_SUFFIXES)}): pass a file or another folder.")

    @property
    def max_sequences(self) -> int | None:
        return None if self.max_tokens is None else self.max_tokens // self.seq_len


def text_files(folder: Path) -> list[Path]:
    """The text files under `folder`, recursively, in sorted order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


_WIKI_SUBS = [
    (re.compile(r" @([-,.])@ "), r"\1"),
    (re.compile(r" ([,.;:!?)\]}%])"), r"\1"),
    (re.compile(r"([(\[{$]) "), r"\1"),
    (re.compile(r" (n't|'s|'re|'ve|'ll|'d|'m)\b"), r"\1"),
    (re.compile(r"\" (.*?) \""), r'"\1"'),
]


def clean_wikitext(text: str) -> str:
    """Undo WikiText's word-level spacing: ``a @-@ b`` -> ``a-b``, ``word ,`` -> ``word,``."""
    for pattern, repl in _WIKI_SUBS:
        text = pattern.sub(repl, text)
    return text


def _file_blocks(path: Path) -> Iterator[str]:
    buf: list[str] = []
    size = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            buf.append(line)
            size += len(line)
            if size >= _BLOCK_CHARS:
                yield "".join(buf)
                buf, size = [], 0
    if buf:
        yield "".join(buf)


def _hf_blocks(spec: str) -> Iterator[str]:
    name, _, split = spec[3:].partition("@")
    name, _, config = name.partition(":")
    try:
        import datasets
    except ImportError:
        raise IclensError("hf: corpora need the datasets package: pip install datasets, or pass a local text file.") from None
    try:
        ds = datasets.load_dataset(name, config or None, split=split or "train", streaming=True)
    except Exception as e:  # the hub or the name is unreachable: the user's fix is another source
        raise IclensError(f"cannot stream Hugging Face dataset {name!r} ({str(e).splitlines()[0][:120]}): "
                          "check the name/network, or pass a local text file.") from None
    for row in ds:
        text = row.get("text") if isinstance(row, dict) else None
        if text is None:
            raise IclensError(f"dataset {name!r} rows have no 'text' field: pass a dataset with a text column or a local file.")
        if text:
            yield text + "\n"


def iter_text_blocks(cfg: CorpusConfig) -> Iterator[str]:
    """The corpus as blocks of whole lines (about 64 KB each), in a fixed order."""
    if str(cfg.source).startswith("hf:"):
        yield from _hf_blocks(str(cfg.source))
        return
    path = Path(cfg.source).expanduser()
    files = text_files(path) if path.is_dir() else [path]
    for f in files:
        wiki = cfg.wikitext if cfg.wikitext is not None else "wikitext" in f.name.lower()
        for block in _file_blocks(f):
            yield clean_wikitext(block) if wiki else block


def iter_sequences(cfg: CorpusConfig, tokenizer) -> Iterator[list[int]]:
    """Token-id sequences of exactly ``cfg.seq_len`` (BOS first when the tokenizer has one).

    The tail shorter than one sequence is dropped. Stops after ``cfg.max_sequences``.
    """
    bos = tokenizer.bos_token_id if cfg.prepend_bos else None
    body = cfg.seq_len - (1 if bos is not None else 0)
    stream: list[int] = []
    emitted = 0
    for block in iter_text_blocks(cfg):
        stream.extend(tokenizer(block, add_special_tokens=False)["input_ids"])
        while len(stream) >= body:
            chunk, stream = stream[:body], stream[body:]
            yield ([bos] if bos is not None else []) + chunk
            emitted += 1
            if cfg.max_sequences is not None and emitted >= cfg.max_sequences:
                return


def corpus_fingerprint(cfg: CorpusConfig) -> str:
    """A short hash of what the token stream depends on (paths, sizes, mtimes, cut settings)."""
    parts = [str(cfg.seq_len), str(cfg.wikitext), str(cfg.prepend_bos)]
    if str(cfg.source).startswith("hf:"):
        parts.append(str(cfg.source))
    else:
        path = Path(cfg.source).expanduser().resolve()
        for f in text_files(path) if path.is_dir() else [path]:
            st = f.stat()
            parts.append(f"{f}:{st.st_size}:{int(st.st_mtime)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
