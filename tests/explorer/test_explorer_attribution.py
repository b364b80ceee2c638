"""Attribution page on tiny-llama: maps equal the circuits library's, typed pairs, bad pairs."""

from __future__ import annotations

import numpy as np
import pytest

from circuits.attribution import attribution_patch
from circuits.patching import activation_patch, head_sweep, resid_sweep, task_metric
from circuits.tasks import make_task, task_from_pairs
from probes.hooks import active_hooks
from explorer_testutil import array, by_title, errors


def test_task_maps_match_library(app, tiny_model):
    app.switch_page("views/attribution.py").run()
    assert not app.exception and errors(app) == []
    assert app.selectbox(key="attribution.attr_method").value == "attribution"  # the fast default
    app.number_input(key="attribution.attr_n").set_value(4).run()
    app.selectbox(key="attribution.attr_method").set_value("both").run()
    assert len(app.get("plotly_chart")) == 0  # nothing runs before the button
    app.button(key="run_patching").click().run()
    assert not app.exception and errors(app) == []
    shown = by_title(app)
    task = make_task(tiny_model, "induction", n=4, seed=0)
    metric = task_metric(tiny_model, task)
    exact = activation_patch(tiny_model, task, head_sweep(tiny_model), metric=metric).values
    approx = attribution_patch(tiny_model, task, resid_sweep(tiny_model, task.n_pos), metric=metric).values
    np.testing.assert_allclose(array(shown["activation patching: heads"]["data"][0]["z"]), exact, atol=1e-4)
    np.testing.assert_allclose(array(shown["attribution patching: residual stream"]["data"][0]["z"]), approx, atol=1e-4)
    assert "heads: attribution vs activation" in shown and any(t.startswith("found circuit") for t in shown)
    assert active_hooks(tiny_model) == []


def test_own_pair_and_bad_pairs(app, tiny_model):
    app.switch_page("views/attribution.py").run()
    app.radio(key="attribution.attr_source").set_value("my own pair").run()
    app.selectbox(key="attribution.attr_method").set_value("activation").run()
    app.button(key="run_patching").click().run()
    assert not app.exception and errors(app) == []
    task = task_from_pairs(tiny_model, "custom", ["alice gave the ball to"], ["bob gave the ball to"], [" bob"], [" alice"])
    exact = activation_patch(tiny_model, task, resid_sweep(tiny_model, task.n_pos)).values
    shown = by_title(app)
    np.testing.assert_allclose(array(shown["activation patching: residual stream"]["data"][0]["z"]), exact, atol=1e-4)
    assert "attribution patching: heads" not in shown
    assert shown["activation patching: residual stream"]["data"][0]["x"][:2] == ["0:<bos>", "1:alice"]

    for key, value, good, expect in [
        ("attr_corrupted", "bob gave the red ball to", "bob gave the ball to", "token lengths 6 (clean) and 7"),
        ("attr_answer", " bob alice", " bob", "not a single token"),
        ("attr_clean", "  ", "alice gave the ball to", "type both a clean and a corrupted prompt"),
    ]:
        app.text_input(key=f"attribution.{key}").input(value).run()
        app.button(key="run_patching").click().run()
        assert not app.exception
        assert len(app.error) == 1 and expect in app.error[0].value, errors(app)
        app.text_input(key=f"attribution.{key}").input(good).run()
        app.button(key="run_patching").click().run()  # back to the good pair: cached, shown again
        assert errors(app) == [] and "activation patching: residual stream" in by_title(app)
    assert active_hooks(tiny_model) == []


@pytest.mark.parametrize("method", ["nonsense"])
def test_study_rejects_unknown_method(tiny_model, method):
    from apps.explorer.study import patching_study
    from probes.errors import IclensError

    with pytest.raises(IclensError, match="unknown method"):
        patching_study(tiny_model, {"task": "induction", "n_prompts": 2}, method=method)
