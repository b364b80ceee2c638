"""`iclens probe induction` end to end on a tiny model, and its bad-input behaviour."""

from __future__ import annotations

import json

import pytest

from cli_helpers import run_cli_captured as run


def test_writes_result_and_standalone_report(tmp_path, capsys):
    out = tmp_path / "ind"
    code, _ = run(["probe", "induction", "--model", "tiny-llama", "--out", str(out), "--n-prompts", "2",
                   "--seq-len", "8", "--seed", "3", "--device", "cpu"], capsys)
    assert code == 0
    data = json.loads((out / "result.json").read_text())
    assert data["config"]["seed"] == 3 and data["model"] == "tiny-llama"
    assert set(data["scores"]) >= {"previous_token", "duplicate_token", "induction", "ngram_2", "ngram_3", "ngram_4", "dla"}
    html = (out / "report.html").read_text()
    assert "<script src=" not in html, "report must not load plotly from a CDN"
    assert "Plotly.newPlot" in html and "Induction heads" in html


@pytest.mark.parametrize("args, message", [
    (["--model", "no-such-model"], "embedded models"),
    (["--model", "tiny-llama", "--seq-len", "500"], "context"),
    (["--model", "tiny-llama", "--ngram", "1"], "n-gram"),
    (["--model", "tiny-llama", "--n-prompts", "0"], "n_prompts"),
])
def test_bad_input_one_line_exit_2_and_earlier_output_kept(tmp_path, capsys, args, message):
    out = tmp_path / "ind"
    out.mkdir()
    (out / "result.json").write_text('{"earlier": true}')
    code, cap = run(["probe", "induction", "--out", str(out), "--device", "cpu", *args], capsys)
    assert code == 2
    err_lines = [ln for ln in cap.err.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and message in err_lines[0]
    assert "Traceback" not in cap.err
    assert (out / "result.json").read_text() == '{"earlier": true}'


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, cap = run(["probe", "induction", "--model", "tiny-llama", "--out", str(blocker / "sub")], capsys)
    assert code == 2 and "--out" in cap.err and "Traceback" not in cap.err
    assert blocker.read_text() == "x"


def test_missing_text_corpus_fails_before_work(tmp_path, capsys):
    code, cap = run(["probe", "induction", "--model", "tiny-llama", "--out", str(tmp_path / "o"),
                     "--text", str(tmp_path / "missing.txt")], capsys)
    assert code == 2 and "Traceback" not in cap.err
    assert not (tmp_path / "o").exists()
