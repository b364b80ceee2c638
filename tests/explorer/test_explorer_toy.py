"""Toy-models page: start a short run, see its curves and checkpoints; bad names and empty folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.explorer import toy_runs
from explorer_testutil import array, by_title, errors


def start_run(app, name: str, steps: int = 10):
    app.text_input(key="toy_new_name").input(name).run()
    app.number_input(key="toy_new_steps").set_value(steps).run()
    app.number_input(key="toy_new_d").set_value(2).run()
    app.number_input(key="toy_new_layers").set_value(1).run()
    app.button(key="toy_train").click().run()


def test_empty_runs_folder_then_train_and_browse(app, explorer_env):
    runs = explorer_env["runs"]
    app.switch_page("views/toy_models.py").run()
    assert not app.exception
    assert len(app.error) == 1 and "no training runs under" in app.error[0].value

    start_run(app, "gpt-a")
    assert not app.exception and "trained gpt-a" in app.success[0].value
    run_dir = runs / "gpt-a"
    assert (run_dir / "result.json").is_file() and (run_dir / "report.html").is_file()
    app.run()
    assert errors(app) == []
    figs = by_title(app)
    result = json.loads((run_dir / "result.json").read_text())
    curve = figs["error vs in-context examples"]
    model_trace = next(t for t in curve["data"] if t.get("name") == "model")
    np.testing.assert_allclose(array(model_trace["y"]), result["error_vs_k"]["model"], rtol=1e-6)
    assert {t.get("name") for t in curve["data"]} >= {"model", "least squares"}
    assert "Training loss" in figs

    steps = toy_runs.checkpoint_steps(run_dir)
    assert steps[-1] == 10 and len(steps) == 2  # the trainer keeps the newest two checkpoints
    slider = app.select_slider(key="toy_step")
    assert list(map(int, slider.options)) == steps and int(slider.value) == 10
    last = by_title(app)["attention from the query x, step 10"]
    slider.set_value(steps[0]).run()
    first = by_title(app)[f"attention from the query x, step {steps[0]}"]
    assert not np.allclose(array(first["data"][0]["z"]), array(last["data"][0]["z"]))


@pytest.mark.parametrize("name, expect", [("../escape", "outside"), ("/tmp/elsewhere", "outside"), (" ", "type a run name")])
def test_bad_run_names(app, explorer_env, name, expect):
    app.switch_page("views/toy_models.py").run()
    start_run(app, name)
    assert not app.exception
    assert any(expect in e.value for e in app.error), errors(app)
    assert not (explorer_env["runs"].parent / "escape").exists()


def test_existing_run_is_not_overwritten_and_unfinished_runs_show(app, explorer_env):
    runs = explorer_env["runs"]
    toy_runs.start_linreg(runs / "old", model="lsa", d=2, steps=10, eval_prompts=20)
    before = (runs / "old" / "result.json").read_text()
    (runs / "old" / "result.json").unlink()  # an unfinished run: curves come from its checkpoint
    app.switch_page("views/toy_models.py").run()
    assert errors(app) == []
    assert any("unfinished" in c.value for c in app.caption)
    figs = by_title(app)
    assert "Training loss" in figs and "error vs in-context examples" in figs
    assert any(t.startswith("LSA effective matrix") for t in figs)
    start_run(app, "old")
    assert any("already holds a training run" in e.value for e in app.error)
    assert not (runs / "old" / "result.json").exists() and before
