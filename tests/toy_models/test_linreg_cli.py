"""`iclens train linreg` / `eval linreg` / `report linreg-shifts`: outputs, resume, bad input (exit 2, folder untouched)."""

import hashlib
import json
from pathlib import Path

import pytest

from cli_helpers import run_cli

LSA = ["train", "linreg", "--model", "lsa", "--d", "3", "--steps", "60", "--batch-size", "200", "--lr", "0.03",
       "--checkpoint-every", "20", "--eval-prompts", "50", "--device", "cpu"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def lsa_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "lsa"
    assert run_cli([*LSA, "--out", str(out)]) == 0
    return out


def test_train_writes_result_report_and_checkpoints(lsa_run):
    res = json.loads((lsa_run / "result.json").read_text())
    assert res["steps_done"] == 60 and len(res["losses"]) == 60
    assert set(res["error_vs_k"]) >= {"model", "least squares", "3-NN", "averaging", "zero"}
    assert len(res["error_vs_k"]["model"]) == 21
    assert res["lsa"]["scale_closed_form"] == pytest.approx(20 / 24)
    assert set(res["shifts"]) == {"task", "query", "covariate"}
    html = (lsa_run / "report.html").read_text()
    assert "plotly" in html and "closed form" in html
    ptr = json.loads((lsa_run / "checkpoint.json").read_text())
    assert ptr["step"] == 60 and (lsa_run / ptr["path"] / "model.safetensors").exists()


def test_eval_prints_json_curve_under_shift(lsa_run, capsys):
    assert run_cli(["eval", "linreg", "--run", str(lsa_run), "--shift", "covariate", "--scale", "4", "--json",
                    "--n-prompts", "100", "--k", "8", "--device", "cpu"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["k"] == list(range(9)) and payload["shift"] == "covariate"
    err = payload["error"]
    assert err["least squares"][8] < 1e-6 and err["model"][8] > err["zero"][8]  # LSA fails covariate shift


def test_report_compares_runs(lsa_run, tmp_path):
    out = tmp_path / "cmp"
    assert run_cli(["report", "linreg-shifts", "--run", str(lsa_run), "--out", str(out), "--n-prompts", "50",
                    "--device", "cpu"]) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["k"] == 7 and (out / "report.html").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "linreg", "--d", "0", "--out", "{tmp}/x"], "d must be >= 1"),
    (["train", "linreg", "--model", "rnn", "--out", "{tmp}/x"], "unknown model"),
    (["eval", "linreg", "--run", "{run}", "--k", "99"], "exceeds the context"),
    (["eval", "linreg", "--run", "{run}", "--shift", "label"], "unknown --shift"),
    (["eval", "linreg", "--run", "{tmp}/missing"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(argv, message, lsa_run, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, run=lsa_run) for a in argv]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_resume_with_other_config_or_broken_checkpoint_leaves_folder_untouched(lsa_run, tmp_path, capsys):
    before = _digest(lsa_run)
    assert run_cli([*LSA[:-6], "--steps", "61", "--out", str(lsa_run), "--resume", "--device", "cpu"]) == 2
    assert "config differs" in capsys.readouterr().err
    assert run_cli([*LSA, "--out", str(lsa_run)]) == 2  # no --resume on an existing run
    assert "--resume" in capsys.readouterr().err
    assert _digest(lsa_run) == before
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in lsa_run.rglob("*"):
        if p.is_file():
            (broken / p.relative_to(lsa_run)).parent.mkdir(parents=True, exist_ok=True)
            (broken / p.relative_to(lsa_run)).write_bytes(p.read_bytes())
    ptr = json.loads((broken / "checkpoint.json").read_text())
    (broken / ptr["path"] / "optimizer.safetensors").unlink()
    before = _digest(broken)
    assert run_cli([*LSA, "--out", str(broken), "--resume"]) == 2
    assert "incomplete" in capsys.readouterr().err
    (broken / ptr["path"] / "model.safetensors").write_bytes(b"\x00" * 10)
    assert run_cli(["eval", "linreg", "--run", str(broken)]) == 2
    assert "corrupt" in capsys.readouterr().err
    assert _digest(broken) == {**before, ptr["path"] + "/model.safetensors": hashlib.sha256(b"\x00" * 10).hexdigest()}
