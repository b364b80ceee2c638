"""Task builders: equal lengths, single-token answers, the corruption each task promises."""

from __future__ import annotations

import pytest

from circuits.tasks import TASKS, make_task
from probes.errors import IclensError
from probes.models import TINY_WORDS


@pytest.mark.parametrize("name", ["ioi", "icl-capitals", "icl-antonyms", "induction"])
def test_tiny_tasks_are_well_formed(tiny_model, name):
    task = make_task(tiny_model, name, n=8)
    assert task.clean.shape == task.corrupted.shape and task.n_prompts >= 4
    assert (task.answer != task.wrong).all()
    unk = tiny_model.tokenizer.unk_token_id
    assert not (task.clean == unk).any() and not (task.corrupted == unk).any()
    if name == "ioi":
        words = task.clean_text[0].split()
        assert set(words) <= set(TINY_WORDS)
        a, b = words[0], words[2]  # "{A} and {B} went ..." -> answer A, corrupted swaps A and B
        assert task.corrupted_text[0].split()[:3] == [b, "and", a]
        assert tiny_model.tokenizer.decode([int(task.answer[0])]).strip() == a
    if name == "induction":
        half = (task.n_pos - 1 + 1) // 2  # [bos] A(n) A[:-1]
        assert (task.clean[:, half + 1:] == task.clean[:, 1:task.n_pos - half]).all()
        assert (task.clean[:, half + 1:] == task.corrupted[:, half + 1:]).all()
    if name.startswith("icl"):
        # only the demonstration labels differ; the query is the same
        assert task.clean_text[0] != task.corrupted_text[0]
        assert task.clean_text[0].split()[-2:] == task.corrupted_text[0].split()[-2:]


def test_unknown_task_and_tiny_uppercase(tiny_model):
    with pytest.raises(IclensError, match="unknown task 'nope'"):
        make_task(tiny_model, "nope")
    with pytest.raises(IclensError, match="single tokens"):
        make_task(tiny_model, "icl-uppercase")  # the tiny vocabulary has no upper-case words
    assert "ioi" in TASKS
