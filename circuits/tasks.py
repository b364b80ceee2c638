"""Clean / corrupted prompt tasks for causal interventions.

Every intervention in `circuits` compares a *clean* run (the model does the task)
with a *corrupted* run (the information the task needs is destroyed) on prompts of
identical token length, and reads the answer at the last position.

- ``ioi``: indirect-object identification (Wang et al. 2022, "Interpretability in
  the Wild"). "When Mary and John went to the store, John gave a drink to" ->
  " Mary"; corrupted: the two names swapped in the first clause, so the answer
  becomes " John".
- ``icl-capitals`` / ``icl-antonyms`` / ``icl-uppercase``: few-shot in-context
  tasks; the corrupted prompt shuffles the demonstration labels (Min et al. 2022,
  "Rethinking the role of demonstrations").
- ``induction``: a random token sequence repeated (Olsson et al. 2022); corrupted:
  the first half resampled, so induction would predict a different next token.

Words come from `data/ioi_names.json` and `data/icl_pairs.json` and are filtered
per tokenizer so every name / label is exactly one token (for the tiny test models
this leaves the words of `probes.models.TINY_WORDS`). The answer token is the right
answer of the clean prompt; the wrong token is the answer the corrupted prompt
points to. `metrics.py` turns their logit difference into the normalised metric.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from jaxtyping import Int

from probes.errors import IclensError

DATA = Path(__file__).resolve().parents[1] / "data"
TASKS = ("ioi", "icl-capitals", "icl-antonyms", "icl-uppercase", "induction")


@dataclass
class PatchTask:
    """A batch of clean/corrupted prompt pairs of one token length, answered at the last position."""

    name: str
    clean: Int[torch.Tensor, "batch pos"]
    # "_" dims are unchecked by jaxtyping so a mismatch reaches __post_init__'s one-line IclensError.
    corrupted: Int[torch.Tensor, "_batch _pos"]
    answer: Int[torch.Tensor, " _batch"]
    wrong: Int[torch.Tensor, " _batch"]
    clean_text: list[str] = field(default_factory=list)
    corrupted_text: list[str] = field(default_factory=list)
    str_tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.clean.shape != self.corrupted.shape:
            raise IclensError(f"clean and corrupted prompts have different token shapes {tuple(self.clean.shape)} vs "
                              f"{tuple(self.corrupted.shape)}: pair prompts whose token lengths match.")
        n = self.clean.shape[0]
        if n == 0 or self.answer.shape != (n,) or self.wrong.shape != (n,):
            raise IclensError(f"task {self.name!r} needs one answer and one wrong token per prompt (got {n} prompts).")

    @property
    def n_prompts(self) -> int:
        return int(self.clean.shape[0])

    @property
    def n_pos(self) -> int:
        return int(self.clean.shape[1])

    def to(self, device) -> "PatchTask":
        return PatchTask(self.name, self.clean.to(device), self.corrupted.to(device), self.answer.to(device),
                         self.wrong.to(device), self.clean_text, self.corrupted_text, self.str_tokens)

    def subset(self, n: int) -> "PatchTask":
        return PatchTask(self.name, self.clean[:n], self.corrupted[:n], self.answer[:n], self.wrong[:n],
                         self.clean_text[:n], self.corrupted_text[:n], self.str_tokens)

    def summary(self) -> dict:
        return {"name": self.name, "n_prompts": self.n_prompts, "n_pos": self.n_pos,
                "example_clean": self.clean_text[:1], "example_corrupted": self.corrupted_text[:1]}


# ----------------------------------------------------------------------------- tokenizer helpers


def _unk_id(tokenizer) -> int | None:
    return getattr(tokenizer, "unk_token_id", None)


def single_token(tokenizer, text: str) -> int | None:
    """The id of `text` when it is exactly one known token (no special tokens added), else None."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == _unk_id(tokenizer):
        return None
    return int(ids[0])


def usable_word(tokenizer, word: str) -> str | None:
    """`word` (or its lower-case form, for word-level tiny vocabularies) when ' word' is one token."""
    for w in (word, word.lower()):
        if single_token(tokenizer, " " + w) is not None:
            return w
    return None


def _tokenize(model, texts: list[str]) -> torch.Tensor | list[list[int]]:
    tok = model.tokenizer
    bos = [tok.bos_token_id] if getattr(model.cfg, "default_prepend_bos", True) and tok.bos_token_id is not None else []
    return [bos + tok.encode(t, add_special_tokens=False) for t in texts]


def task_from_pairs(model, name: str, clean_text: list[str], corrupted_text: list[str], answers: list[str],
                    wrongs: list[str]) -> PatchTask:
    """Build a task from your own prompt pairs; answers/wrongs are single-token continuations (' Mary').

    Raises IclensError when a pair's token lengths differ or an answer is not one token.
    """
    if not clean_text or len({len(clean_text), len(corrupted_text), len(answers), len(wrongs)}) != 1:
        raise IclensError("task_from_pairs needs equally many (>= 1) clean prompts, corrupted prompts, answers and wrongs.")
    c_ids, x_ids = _tokenize(model, clean_text), _tokenize(model, corrupted_text)
    for i, (c, x) in enumerate(zip(c_ids, x_ids)):
        if len(c) != len(x) or len(c) != len(c_ids[0]):
            raise IclensError(f"prompt pair {i} has token lengths {len(c)} (clean) and {len(x)} (corrupted), "
                              f"first clean prompt has {len(c_ids[0])}: every prompt must have the same token length.")
    ans, wr = [], []
    for a, w in zip(answers, wrongs):
        ia, iw = single_token(model.tokenizer, a), single_token(model.tokenizer, w)
        if ia is None or iw is None:
            raise IclensError(f"answer {a!r} / wrong {w!r} is not a single token for this tokenizer: pick single-token answers.")
        ans.append(ia)
        wr.append(iw)
    dev = model.cfg.device
    return PatchTask(name, torch.tensor(c_ids, device=dev), torch.tensor(x_ids, device=dev), torch.tensor(ans, device=dev),
                     torch.tensor(wr, device=dev), clean_text, corrupted_text,
                     [model.tokenizer.decode([t]) for t in c_ids[0]])


def _largest_equal_length(model, rows: list[tuple[str, str, str, str]], n: int, name: str) -> PatchTask:
    """Keep the prompts of the most common token length (templates differ), at most n of them."""
    if not rows:
        raise IclensError(f"task {name!r}: no usable prompts for this tokenizer (its words are not single tokens).")
    lens = [len(_tokenize(model, [r[0]])[0]) for r in rows]
    best = Counter(lens).most_common(1)[0][0]
    keep = [r for r, n_tok in zip(rows, lens) if n_tok == best]
    keep = [r for r in keep if len(_tokenize(model, [r[1]])[0]) == best][:n]
    return task_from_pairs(model, name, *map(list, zip(*keep)))


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


# ----------------------------------------------------------------------------- builders


def _known_template(tokenizer, template: str) -> bool:
    filled = template.format(A="X", B="X", place="X", object="X").replace("X", "")
    ids = tokenizer.encode(filled, add_special_tokens=False)
    return _unk_id(tokenizer) not in ids


def ioi_task(model, n: int = 32, seed: int = 0) -> PatchTask:
    """`n` IOI prompts; clean answer = the indirect object, corrupted = names swapped in the first clause."""
    data = _load("ioi_names.json")
    tok = model.tokenizer
    names = [w for w in (usable_word(tok, x) for x in data["names"]) if w]
    places = [w for w in (usable_word(tok, x) for x in data["places"]) if w]
    objects = [w for w in (usable_word(tok, x) for x in data["objects"]) if w]
    templates = [t for t in data["templates"] if _known_template(tok, t)]
    if len(set(names)) < 2 or not places or not objects or not templates:
        raise IclensError("ioi: this tokenizer knows too few single-token names/places/objects for IOI prompts.")
    rng = random.Random(seed)
    rows = []
    for _ in range(4 * n):
        a, b = rng.sample(sorted(set(names)), 2)
        t, p, o = rng.choice(templates), rng.choice(places), rng.choice(objects)
        clean = t.format(A=a, B=b, place=p, object=o)
        corrupt = t.format(A=b, B=a, place=p, object=o)  # swapped: now b is the indirect object
        rows.append((clean, corrupt, " " + a, " " + b))
    return _largest_equal_length(model, rows, n, "ioi")


def icl_task(model, task: str = "icl-capitals", n: int = 32, n_shots: int = 4, seed: int = 0) -> PatchTask:
    """Few-shot x -> y prompts with (at most) `n_shots` demonstrations; corrupted: demonstration labels shuffled.

    The wrong token is the label of another pair from the same task (what a model that
    ignores the query might say).
    """
    data = _load("icl_pairs.json")
    if task not in data:
        raise IclensError(f"unknown ICL task {task!r}: use one of {', '.join(k for k in data if k.startswith('icl-'))}.")
    tok = model.tokenizer
    pairs = []
    for x, y in data[task]:  # as written, else lower-cased (word-level tiny vocabularies)
        for cx, cy in ((x, y), (x.lower(), y.lower())):
            if cx != cy and single_token(tok, " " + cx) and single_token(tok, " " + cy):
                pairs.append((cx, cy))
                break
    if len(pairs) < 3:
        raise IclensError(f"{task}: only {len(pairs)} pairs are single tokens for this tokenizer, need at least 3: "
                          "use another task.")
    n_shots = min(n_shots, len(pairs) - 2)  # small vocabularies (tiny models) get fewer demonstrations
    fmt = next((f for f in data["formats"] if _unk_id(tok) not in tok.encode(f.format(x="", y=""), add_special_tokens=False)),
               data["formats"][-1])
    rng = random.Random(seed)
    rows = []
    for _ in range(4 * n):
        chosen = rng.sample(pairs, n_shots + 2)
        demos, (qx, qy), (_, wy) = chosen[:n_shots], chosen[n_shots], chosen[n_shots + 1]
        labels = [y for _, y in demos]
        shuffled = labels[1:] + labels[:1]  # a derangement: no demonstration keeps its label
        head = fmt.split("{y}")[0]
        clean = " " + "".join(fmt.format(x=x, y=y) for x, y in demos) + head.format(x=qx).rstrip()
        corrupt = " " + "".join(fmt.format(x=x, y=y) for (x, _), y in zip(demos, shuffled)) + head.format(x=qx).rstrip()
        rows.append((clean.replace("\n ", "\n"), corrupt.replace("\n ", "\n"), " " + qy, " " + wy))
    return _largest_equal_length(model, rows, n, task)


def induction_task(model, n: int = 32, seq_len: int = 10, seed: int = 0) -> PatchTask:
    """[bos] A A[:-1] -> A[-1]; corrupted: [bos] B A[:-1] (first half resampled), wrong = B[-1].

    Tokens are distinct within a sequence, drawn from ordinary (non-special) ids.
    """
    tok = model.tokenizer
    d_vocab = int(model.cfg.d_vocab)
    special = set(getattr(tok, "all_special_ids", []) or [])
    lo, hi = (1000, min(d_vocab, 20000)) if d_vocab > 5000 else (0, d_vocab)
    pool = [i for i in range(lo, hi) if i not in special and i != _unk_id(tok)]
    if len(pool) < 2 * seq_len:
        raise IclensError(f"induction: vocabulary too small for sequences of {seq_len} distinct tokens.")
    g = random.Random(seed)
    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    clean, corrupt, ans, wr = [], [], [], []
    for _ in range(n):
        seq = g.sample(pool, 2 * seq_len)
        a, b = seq[:seq_len], seq[seq_len:]
        clean.append(bos + a + a[:-1])
        corrupt.append(bos + b + a[:-1])
        ans.append(a[-1])
        wr.append(b[-1])
    dev = model.cfg.device
    dec = [tok.decode(c) for c in clean]
    return PatchTask("induction", torch.tensor(clean, device=dev), torch.tensor(corrupt, device=dev),
                     torch.tensor(ans, device=dev), torch.tensor(wr, device=dev), dec, [tok.decode(c) for c in corrupt],
                     [tok.decode([t]) for t in clean[0]])


def task_from_file(model, path: str | Path) -> PatchTask:
    """Your own prompts: a JSON list of {"clean", "corrupted", "answer", "wrong"} objects (answers single tokens)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
        cols = [[r[k] for r in rows] for k in ("clean", "corrupted", "answer", "wrong")]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise IclensError(f"prompt file {path}: expected a JSON list of objects with clean, corrupted, answer and wrong "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).") from None
    return task_from_pairs(model, path.stem, *cols)


def make_task(model, name: str, n: int = 32, seed: int = 0) -> PatchTask:
    """The registry: `name` in TASKS -> its PatchTask with `n` prompts."""
    if name == "ioi":
        return ioi_task(model, n=n, seed=seed)
    if name.startswith("icl-") and name in TASKS:
        return icl_task(model, name, n=n, seed=seed)
    if name == "induction":
        return induction_task(model, n=n, seed=seed)
    raise IclensError(f"unknown task {name!r}: use one of {', '.join(TASKS)}.")
