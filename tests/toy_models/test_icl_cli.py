"""`iclens train icl-classification`, `train pos-forgetting`, `report forgetting`, `sweep`: tiny runs end to end
and bad input (one line, exit 2, earlier output kept)."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli_captured as run
from toy_models.train import TrainConfig


def test_icl_classification_cli_writes_result_and_report(tmp_path, capsys):
    out = tmp_path / "icl"
    code, cap = run(["train", "icl-classification", "--out", str(out), "--K", "32", "--L", "8", "--steps", "8",
                     "--batch-size", "16", "--d-model", "16", "--eval-every", "4", "--eval-size", "32",
                     "--schedule", "active", "--forget-every", "3", "--seed", "2", "--device", "cpu"], capsys)
    assert code == 0, cap.err
    r = json.loads((out / "result.json").read_text())
    assert r["config"]["n_classes"] == 32 and r["steps_done"] == 8
    assert [e["step"] for e in r["events"]] == [3, 6] and r["events"][0]["reset"] == ["read_in.W_in"]
    html = (out / "report.html").read_text()
    assert "Plotly.newPlot" in html and "Head ablation" in html
    # rerunning into a finished run folder is refused before any work, nothing lost
    code, cap = run(["train", "icl-classification", "--out", str(out), "--steps", "20"], capsys)
    assert code == 2 and "--resume" in cap.err
    assert json.loads((out / "result.json").read_text()) == r


def test_pos_forgetting_cli_and_report(tmp_path, capsys):
    outs = []
    for sched, extra in (("none", ["--lr-schedule", "cosine"]),
                         ("temporary", ["--forget-every", "5", "--forget-until", "12", "--ema-decay", "0.9"])):
        out = tmp_path / sched
        code, cap = run(["train", "pos-forgetting", "--out", str(out), "--schedule", sched, *extra, "--n-words", "20",
                         "--d-model", "16", "--steps", "16", "--batch-size", "8", "--eval-every", "8",
                         "--device", "cpu"], capsys)
        assert code == 0, cap.err
        outs.append(out)
    # the cosine run ends at the rate the schedule gives its last step; the constant one keeps 1e-3
    last_lr = [json.loads(next((o / "checkpoints").glob("step-0000016")).joinpath("state.json").read_text())
               ["param_groups"][0]["lr"] for o in outs]
    assert last_lr == [pytest.approx(TrainConfig(steps=16, lr=1e-3, lr_schedule="cosine").lr_at(15)), 1e-3]
    assert last_lr[0] < 1e-4
    r = json.loads((outs[1] / "result.json").read_text())
    assert [e["step"] for e in r["events"]] == [5, 10]
    assert set(r["evals"][-1]) >= {"in_dist", "tail", "switched", "switched_tail", "heldout", "heldout_like", "ambiguous"}
    assert {f"ema_{k}" for k in ("heldout", "switched", "ambiguous")} <= set(r["evals"][-1])  # the weight average too
    assert set(r["summary"]["ema"]) >= {"heldout", "transient", "dual_process"}
    assert "ema_heldout" not in json.loads((outs[0] / "result.json").read_text())["evals"][-1]  # only when asked
    assert [(b["lo"], b["hi"]) for b in r["context_by_rank"]] == [(0, 1), (1, 2), (2, 4), (4, 6), (6, 10)]
    assert all(0 <= b["context"] <= 1 for b in r["context_by_rank"])
    att = r["query_attention"]  # 2 layers x 4 heads (the preset's) on every probed eval set
    assert set(att) == {"tail", "switched", "switched_tail", "heldout", "ambiguous"}  # 20 words: one ambiguous per role
    assert all(len(a["match"]) == 2 and len(a["match"][0]) == 4 and len(a["copula"]) == 2 for a in att.values())
    assert all(0 <= a["match"][i][h] + a["copula"][i][h] <= 1 + 1e-6
               for a in att.values() for i in (0, 1) for h in range(4))
    rep = tmp_path / "cmp"
    code, cap = run(["report", "forgetting", "--run", str(outs[0]), "--run", str(outs[1]), "--out", str(rep)], capsys)
    assert code == 0, cap.err
    assert "Forgetting schedules" in (rep / "report.html").read_text()
    assert "In-context use by word frequency" in (rep / "report.html").read_text()
    assert "Where the query looks: temporary" in (rep / "report.html").read_text()
    assert "Live weights and their moving average" in (rep / "report.html").read_text()
    assert len(json.loads((rep / "result.json").read_text())["runs"]) == 2


def test_sweep_cli(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--out", str(out), "--K", "16,32", "--B", "1,2", "--eps", "0,0.4", "--steps", "6",
            "--batch-size", "8", "--eval-size", "16", "--device", "cpu"]
    code, cap = run(args, capsys)
    assert code == 0, cap.err
    r = json.loads((out / "result.json").read_text())
    assert [(p["n_classes"], p["burstiness"], p["eps"]) for p in r["points"]][:3] == [(16, 1, 0), (16, 1, 0.4), (16, 2, 0)]
    assert len(r["points"]) == 8
    html = (out / "report.html").read_text()
    assert "over n_classes x burstiness" in html  # axes: the first two fields swept over several values
    assert "Phase diagram (eps = 0.0, zipf_alpha = 0.0)" in html  # one diagram per value of the others
    assert "Phase diagram (eps = 0.4, zipf_alpha = 0.0)" in html
    code, cap = run(args, capsys)  # a rerun reads the finished points back
    assert code == 0 and json.loads((out / "result.json").read_text())["points"] == r["points"]


@pytest.mark.parametrize("args, message", [
    (["train", "icl-classification", "--B", "3"], "divide"),
    (["train", "icl-classification", "--schedule", "sometimes"], "schedule"),
    (["train", "icl-classification", "--optimizer", "rmsprop"], "optimizer"),
    (["train", "pos-forgetting", "--schedule", "temporary", "--forget-every", "10", "--forget-until", "5"], "until"),
    (["train", "pos-forgetting", "--resume"], "resume"),
    (["train", "pos-forgetting", "--lr-schedule", "step"], "lr schedule"),
    (["train", "pos-forgetting", "--ema-decay", "1.5"], "ema decay"),
    (["sweep", "--K", "a,b"], "comma-separated"),
    (["sweep", "--B", "3"], "divide"),
    (["report", "forgetting", "--run", "/nonexistent/run"], "missing"),
])
def test_bad_input_one_line_exit_2_and_earlier_output_kept(tmp_path, capsys, args, message):
    out = tmp_path / "o"
    out.mkdir()
    (out / "result.json").write_text('{"earlier": true}')
    code, cap = run([*args, "--out", str(out / "sub") if "--resume" in args else str(out)], capsys)
    assert code == 2
    err_lines = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and message in err_lines[0], cap.err
    assert "Traceback" not in cap.err
    assert (out / "result.json").read_text() == '{"earlier": true}'
