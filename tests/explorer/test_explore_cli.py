"""`iclens explore`: options reach `streamlit run` and the app; bad options exit 2 before starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.cli import main
from apps.commands import explore as explore_cmd


@pytest.fixture
def launched(monkeypatch):
    calls = []
    monkeypatch.setattr(explore_cmd.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    return calls


def test_explore_passes_settings(launched, tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "reports"
    main(["explore", "--model", "tiny-llama", "--port", "8611", "--runs-dir", str(runs), "--out-dir", str(out),
          "--headless", "--device", "cpu"])
    (cmd, env), = launched
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == explore_cmd.APP and explore_cmd.APP.exists()
    opts = dict(zip(cmd[5::2], cmd[6::2]))
    assert opts["--server.port"] == "8611" and opts["--server.headless"] == "true"
    assert opts["--client.showErrorDetails"] == "none" and opts["--server.address"] == "localhost"
    assert env["ICLENS_EXPLORER_MODEL"] == "tiny-llama" and env["ICLENS_EXPLORER_DEVICE"] == "cpu"
    assert env["ICLENS_EXPLORER_RUNS_DIR"] == str(runs.resolve()) and env["ICLENS_EXPLORER_OUT_DIR"] == str(out.resolve())
    assert runs.is_dir() and out.is_dir()  # created before the app starts
    assert str(explore_cmd.ROOT) in env["PYTHONPATH"].split(":")


@pytest.mark.parametrize("args, message", [
    (["--port", "0"], "is not a port number"),
    (["--port", "70000"], "is not a port number"),
    (["--model", " "], "--model is empty"),
    (["--device", "nonsense"], "unknown device"),
])
def test_explore_bad_options_exit_2(launched, tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["explore", "--out-dir", str(tmp_path), "--runs-dir", str(tmp_path), *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert launched == []


def test_explore_out_dir_that_is_a_file(launched, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("keep me")
    with pytest.raises(SystemExit) as e:
        main(["explore", "--out-dir", str(f), "--runs-dir", str(tmp_path)])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err
    assert f.read_text() == "keep me" and launched == []
