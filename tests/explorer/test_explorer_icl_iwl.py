"""ICL vs IWL page: tiny classification, forgetting and sweep runs made by the library / CLI; the page's curves,
transition steps and phase diagram equal result.json; an unfinished run shows the same curves from its checkpoint;
bad folders are one st.error and nothing outside the runs folder is listed."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from explorer_testutil import array, by_title, errors, frame_with

PAGE = "views/icl_iwl.py"
CURVES = "ICL accuracy and the two progress measures"


@pytest.fixture(scope="module")
def icl_runs(tmp_path_factory):
    """icl/ (library, as `iclens train icl-classification` does: run_training + summarize), pos/ and sweep/ (CLI)."""
    from apps.cli import main
    from probes.results import write_json
    from toy_models.icl_iwl_experiment import ICLRunConfig, run_training, summarize

    base = tmp_path_factory.mktemp("icl_runs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # 300 steps at lr 3e-3: ICL accuracy rises by more than 0.2 here, so a transition is detected
        cfg = ICLRunConfig(n_classes=32, n_labels=8, dim=15, n_items=4, burstiness=2, d_model=32, mlp_hidden=16,
                           steps=300, batch_size=32, lr=3e-3, eval_every=10, eval_size=32, checkpoint_every=150, seed=3)
        model, task, res = run_training(cfg, base / "icl", progress=False)
        write_json(base / "icl" / "result.json", {**summarize(model, task, cfg, res), "schedule": None})
        for args in (["train", "pos-forgetting", "--out", str(base / "pos"), "--schedule", "active", "--forget-every",
                      "4", "--n-words", "20", "--d-model", "16", "--steps", "12", "--batch-size", "8", "--eval-every",
                      "4", "--ema-decay", "0.9", "--device", "cpu"],
                     ["sweep", "--out", str(base / "sweep"), "--K", "16,32", "--B", "2", "--eps", "0,0.4", "--steps", "4",
                      "--batch-size", "8", "--eval-size", "16", "--device", "cpu"]):
            with pytest.raises(SystemExit) as e:
                main(args)
                raise SystemExit(0)
            assert e.value.code == 0
    finally:
        torch.set_num_threads(threads)
    return base


@pytest.fixture
def runs(explorer_env, icl_runs):
    root = explorer_env["runs"]
    for name in ("icl", "pos", "sweep"):
        shutil.copytree(icl_runs / name, root / name)
    outside = explorer_env["runs"].parent / "elsewhere"
    shutil.copytree(icl_runs / "icl", outside)
    os.symlink(outside, root / "escape")  # a link to a run outside the runs folder
    return root


def pick(app, name):
    app.selectbox(key="icl_pick").set_value(name).run()
    assert errors(app) == [] and not app.exception


def test_classification_run_curves_and_transitions_equal_result(app, runs):
    app.switch_page(PAGE).run()
    assert errors(app) == [] and not app.exception
    options = app.selectbox(key="icl_pick").options
    assert options[:3] == ["icl (icl-classification)", "pos (pos-forgetting)", "sweep (sweep)"]
    assert len(options) == 3 + 4  # + the sweep's 4 points (icl-classification runs); no 'escape'
    pick(app, "icl")
    res = json.loads((runs / "icl" / "result.json").read_text())
    fig = by_title(app)[CURVES]
    traces = {t["name"]: t for t in fig["data"]}
    for key, name in (("icl_acc", "ICL accuracy (novel classes)"), ("iwl_acc", "IWL accuracy (query class absent)"),
                      ("flip_acc", "flipped-label accuracy"), ("induction_score", "induction score (layer 2)"),
                      ("prev_token_score", "previous-token score (layer 1)")):
        assert list(array(traces[name]["x"])) == res["steps"]  # one time axis
        np.testing.assert_allclose(array(traces[name]["y"]), res["curves"][key])
    t = res["transitions"]["icl_acc"]
    assert t is not None  # the fixture's run has an ICL transition
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["ICL transition step"] == f"{t['step']:.0f}"
    for key, label in (("prev_token_score", "prev-token score rises"), ("induction_score", "induction score rises"),
                       ("iwl_acc", "IWL accuracy rises")):
        tk = res["transitions"][key]
        assert metrics[label] == (f"{tk['step']:.0f}" if tk else "none")
    assert [s["x0"] for s in fig["layout"]["shapes"] if s["type"] == "line"] == [t["step"]]  # the marked step
    fin = res["final"]
    assert metrics["final ICL accuracy"] == f"{fin['icl_acc']:.3f}"
    assert metrics["final IWL accuracy"] == f"{fin['iwl_acc']:.3f}"
    np.testing.assert_allclose(array(by_title(app)["Training loss"]["data"][0]["y"]), res["losses"], rtol=1e-6)
    ab = {b["name"]: b for b in by_title(app)["Head ablation after training"]["data"]}
    np.testing.assert_allclose(array(ab["ICL"]["y"]), [res["ablation"][c]["icl"] for c in ab["ICL"]["x"]])


def test_unfinished_run_shows_the_same_curves_from_its_checkpoint(app, runs):
    from toy_models.icl_iwl_experiment import detect_transition

    res = json.loads((runs / "icl" / "result.json").read_text())
    (runs / "icl" / "result.json").unlink()
    app.switch_page(PAGE).run()
    pick(app, "icl")
    assert any("unfinished (no result.json)" in c.value and "step 300" in c.value for c in app.caption)
    traces = {t["name"]: t for t in by_title(app)[CURVES]["data"]}
    np.testing.assert_allclose(array(traces["ICL accuracy (novel classes)"]["y"]), res["curves"]["icl_acc"])
    assert detect_transition(res["steps"], res["curves"]["icl_acc"]) == res["transitions"]["icl_acc"]
    assert {m.label: m.value for m in app.metric}["ICL transition step"] == f"{res['transitions']['icl_acc']['step']:.0f}"

    pos = json.loads((runs / "pos" / "result.json").read_text())  # a forgetting run, the same way
    (runs / "pos" / "result.json").unlink()
    pick(app, "pos")
    from toy_models.forgetting import POS_CURVES

    traces = by_title(app)["POS task: active schedule"]["data"]
    for kind in ("heldout", "heldout_like"):
        np.testing.assert_allclose(array(traces[POS_CURVES.index(kind)]["y"]), [e[kind] for e in pos["evals"]])
    table = frame_with(app, "eval set").set_index("eval set")
    assert table.loc["heldout", "peak"] == pytest.approx(pos["summary"]["heldout"]["peak"])
    assert any(f"reset at steps {[e['step'] for e in pos['events']]}" in c.value for c in app.caption)


def test_forgetting_run_and_sweep_equal_result(app, runs):
    from toy_models.forgetting import POS_CURVES

    app.switch_page(PAGE).run()
    pick(app, "pos")
    res = json.loads((runs / "pos" / "result.json").read_text())
    fig = by_title(app)["POS task: active schedule"]
    assert len(fig["data"]) == len(POS_CURVES)  # one panel per eval set
    for trace, kind in zip(fig["data"], POS_CURVES):
        assert list(array(trace["x"])) == [e["step"] for e in res["evals"]]
        np.testing.assert_allclose(array(trace["y"]), [e[kind] for e in res["evals"]])
    table = frame_with(app, "eval set").set_index("eval set")
    for kind in POS_CURVES:
        assert table.loc[kind, "final"] == pytest.approx(res["summary"][kind]["final"])
    assert any(f"reset at steps {[e['step'] for e in res['events']]}" in c.value for c in app.caption)
    by_rank = by_title(app)["Answered from the context, by frequency rank (end of run)"]["data"]
    np.testing.assert_allclose(array(by_rank[0]["y"]), [b["context"] for b in res["context_by_rank"]])
    average = by_title(app)["Live weights vs their moving average"]["data"]  # per eval set: live, then the average
    kinds = [k for k in ("switched", "heldout", "ambiguous") for _ in (0, 1)]
    assert [t["line"]["dash"] for t in average] == ["solid", "dash"] * 3
    for trace, kind, prefix in zip(average, kinds, ["", "ema_"] * 3):
        np.testing.assert_allclose(array(trace["y"]), [e[prefix + kind] for e in res["evals"]])
    looks = by_title(app)["Where the query looks (end of run)"]["data"]  # match row first, one heatmap per eval set
    for trace, kind in zip(looks, res["query_attention"]):
        np.testing.assert_allclose(array(trace["z"]), res["query_attention"][kind]["match"])
    # another forgetting run (a copy) on the same axes: one line per run in every panel
    shutil.copytree(runs / "pos", runs / "pos_copy")
    app.run()
    app.multiselect(key="pos_compare").select("pos_copy").run()
    assert errors(app) == []
    both = by_title(app)["POS task: forgetting schedules compared"]["data"]
    assert sorted({t["name"] for t in both}) == ["active (pos)", "active (pos_copy)"]
    assert len(both) == 2 * len(POS_CURVES)
    for i, trace in enumerate(both):  # run by run, eval set by eval set
        kind = POS_CURVES[i % len(POS_CURVES)]
        np.testing.assert_allclose(array(trace["y"]), [e[kind] for e in res["evals"]])

    pick(app, "sweep")
    sw = json.loads((runs / "sweep" / "result.json").read_text())
    heat = by_title(app)["ICL vs IWL: final accuracy"]["data"]
    for trace, metric in zip(heat, ("icl_acc", "iwl_acc")):
        assert trace["x"] == ["16", "32"] and trace["y"] == ["0.0", "0.4"]
        want = [[next(p[metric] for p in sw["points"] if p["n_classes"] == k and p["eps"] == e) for k in (16, 32)]
                for e in (0.0, 0.4)]
        np.testing.assert_allclose(array(trace["z"]), want)
    # a sweep still running (or killed): only its finished points, the others left blank
    (runs / "sweep" / "result.json").unlink()
    (runs / "sweep" / "points" / "n_classes=32_burstiness=2_eps=0.4_zipf_alpha=0.0" / "point.json").unlink()
    app.run()
    assert errors(app) == [] and any("3 of 4 points finished" in c.value for c in app.caption)
    z = array(by_title(app)["ICL vs IWL: final accuracy"]["data"][0]["z"])
    assert np.isnan(z[1, 1]) and np.allclose(z[0], [p["icl_acc"] for p in sw["points"] if p["eps"] == 0.0])


@pytest.mark.parametrize("typed, expect", [
    ("..", "outside"), ("/etc", "outside"), ("escape", "outside"), ("nowhere", "is not a folder"),
    ("sweep/points/nothing", "is not a folder"),
])
def test_bad_folder_is_one_error(app, runs, typed, expect):
    app.switch_page(PAGE).run()
    app.text_input(key="icl.icl_sub").input(typed).run()
    assert not app.exception
    assert len(app.error) == 1 and expect in app.error[0].value, errors(app)
    assert by_title(app) == {}
    app.text_input(key="icl.icl_sub").input("sweep").run()  # keeps working: the sweep itself and its points
    assert errors(app) == [] and app.selectbox(key="icl_pick").options[0] == ". (sweep)"


def test_empty_runs_folder_is_one_error(app):
    app.switch_page(PAGE).run()
    assert not app.exception
    assert len(app.error) == 1 and "no icl-classification, pos-forgetting or sweep runs" in app.error[0].value
