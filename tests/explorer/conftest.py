"""Explorer fixtures: AppTest on the tiny model with settings pointed at a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "apps" / "explorer" / "app.py"


@pytest.fixture
def explorer_env(tmp_path, monkeypatch):
    """Settings for a tiny-model explorer whose runs and out folders are temp folders."""
    out = tmp_path / "out"
    runs = tmp_path / "runs"
    out.mkdir()
    runs.mkdir()
    monkeypatch.setenv("ICLENS_EXPLORER_MODEL", "tiny-llama")
    monkeypatch.setenv("ICLENS_EXPLORER_DEVICE", "cpu")
    monkeypatch.setenv("ICLENS_EXPLORER_OUT_DIR", str(out))
    monkeypatch.setenv("ICLENS_EXPLORER_RUNS_DIR", str(runs))
    return {"out": out, "runs": runs}


@pytest.fixture
def app(explorer_env):
    """A fresh AppTest session of the explorer, first page run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at
