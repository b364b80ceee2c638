"""`iclens report attribution` / `report run`: outputs, and one-line exit-2 errors on bad input."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli as _run


def test_attribution_report_writes_result_and_html(tmp_path):
    out = tmp_path / "rep"
    assert _run(["report", "attribution", "--model", "tiny-llama", "--task", "ioi", "--n-prompts", "6",
                 "--out", str(out), "--device", "cpu"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert set(res["maps"]) == {"activation", "attribution"}
    assert len(res["maps"]["activation"]["heads"]) == 2 and len(res["maps"]["activation"]["resid"][0]) == res["task"]["n_pos"]
    assert res["agreement"]["resid"]["pearson"] > 0.5
    assert res["circuit"]["faithfulness"] >= res["config"]["threshold"]
    assert len(res["curves"]["most important first"]) == len(res["curves"]["k"])
    html = (out / "report.html").read_text()
    assert "found circuit" in html and "Ablation curves" in html


@pytest.mark.parametrize("argv,msg", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--method", "exact"], "unknown method 'exact'"),
    (["--ablation", "none"], "unknown ablation"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, argv, msg):
    out = tmp_path / "o"
    code = _run(["report", "attribution", "--model", "tiny-llama", "--out", str(out), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and msg in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()  # rejected before any work


def test_spec_runs_every_report_and_rejects_bad_specs(tmp_path, capsys):
    spec = tmp_path / "study.yaml"
    spec.write_text("out: runs\ndefaults: {model: tiny-llama, method: attribution, n_prompts: 4, device: cpu, circuit_search: ranked, curve_points: 3}\n"
                    "reports:\n  - {name: a, task: ioi}\n  - {name: b, task: induction, threshold: 0.5}\n")
    assert _run(["report", "run", str(spec)]) == 0
    index = json.loads((tmp_path / "runs" / "result.json").read_text())
    assert [r["name"] for r in index["reports"]] == ["a", "b"]
    assert (tmp_path / "runs" / "b" / "report.html").exists()
    before = (tmp_path / "runs" / "a" / "result.json").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("reports:\n  - {name: a, task: ioi, model: tiny-llama}\n  - {name: c, taks: ioi}\n")
    assert _run(["report", "run", str(bad), "--out", str(tmp_path / "runs")]) == 2
    assert "unknown keys ['taks']" in capsys.readouterr().err
    assert (tmp_path / "runs" / "a" / "result.json").read_text() == before  # nothing already written lost


def test_prompt_pairs_of_different_token_lengths_exit_2(tmp_path, capsys):
    prompts = tmp_path / "mine.json"
    prompts.write_text(json.dumps([
        {"clean": "mary and john went to the store , john gave a ball to", "corrupted": "john and mary went to the store , mary gave a ball to", "answer": " mary", "wrong": " john"},
        {"clean": "mary and john went to the park , john gave a ball to", "corrupted": "john and mary went to park , mary gave a ball to", "answer": " mary", "wrong": " john"},
    ]))
    code = _run(["report", "attribution", "--model", "tiny-llama", "--prompts", str(prompts), "--out", str(tmp_path / "o"),
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "prompt pair 1 has token lengths 14 (clean) and 13 (corrupted)" in err and "\n" not in err
