"""Cancelling a long computation (Streamlit's Stop) leaves no hooks on the cached model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import StopException

from apps.explorer import compute, state
from probes.errors import IclensError
from probes.hooks import active_hooks

APP = Path(__file__).resolve().parents[2] / "apps" / "explorer" / "app.py"


def test_stop_during_scan_leaves_model_clean_and_is_not_cached():
    model = state._load("tiny-llama", "cpu")
    seen = []

    def stop_after_first(fraction, message):
        seen.append(fraction)
        raise StopException()  # what a Streamlit progress update raises when the user presses Stop

    with pytest.raises(StopException):
        state.induction_scan("tiny-llama", "cpu", 3, 6, 123, progress=stop_after_first)
    assert seen and seen[0] < 1.0
    assert active_hooks(model) == []
    # nothing half-done was cached: the same inputs run again, to the end
    fractions = []
    res = state.induction_scan("tiny-llama", "cpu", 3, 6, 123, progress=lambda f, m: fractions.append(f))
    assert fractions[-1] == 1.0 and res.n_layers == 2
    assert active_hooks(model) == []


def test_bad_inputs_raise_iclens_errors(tiny_model):
    with pytest.raises(IclensError, match="empty"):
        compute.prompt_summary(tiny_model, " \n ")
    with pytest.raises(IclensError, match="top-k"):
        compute.prompt_summary(tiny_model, "a cat", k=0)
    with pytest.raises(IclensError, match="layer 5 does not exist"):
        compute.repeated_example(tiny_model, 5)
    with pytest.raises(IclensError, match="explorer's limit is 8"):
        compute.tokenize(tiny_model, "a " * 20, limit=8)
    assert active_hooks(tiny_model) == []


def test_attention_patterns_rows_sum_to_one_and_are_causal(tiny_model):
    out = compute.attention_patterns(tiny_model, "the cat saw the dog")
    p = out["patterns"].astype(float)
    assert p.shape == (2, 4, 6, 6) and out["tokens"][0] == "<bos>"
    assert abs(p.sum(-1) - 1).max() < 5e-3
    assert abs(p * (1 - np.tril(np.ones((6, 6))))).max() == 0  # no query looks at a later key


def test_warm_up_fills_the_first_page_cache(explorer_env):
    """serve.py's warm-up leaves the first page with nothing to compute: its visit runs no forward pass."""
    from explorer_testutil import errors
    from streamlit.testing.v1 import AppTest

    state.warm_up()
    model = state._load("tiny-llama", "cpu")
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(1))
    try:
        at = AppTest.from_file(str(APP), default_timeout=60).run()
        assert errors(at) == [] and len(at.dataframe) >= 2
        assert calls == []
    finally:
        handle.remove()


def test_visible_tokens():
    assert compute.visible("a\nb\t") == "a\\nb\\t" and compute.visible(" cat") == " cat"
