"""Reports page and path sandboxing: browse only under the output folder, never outside it."""

from __future__ import annotations

import json
import os

import pytest

from apps.explorer.state import safe_path
from apps.report import Section, write_report
from probes.errors import IclensError
from probes.results import write_json


def test_safe_path_stays_inside(tmp_path):
    root = tmp_path / "out"
    (root / "a" / "b").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", root / "link")
    assert safe_path(root, "") == root.resolve()
    assert safe_path(root, "a/b") == (root / "a" / "b").resolve()
    assert safe_path(root, "a/../a/b/") == (root / "a" / "b").resolve()
    assert safe_path(root, str(root / "a")) == (root / "a").resolve()  # absolute but inside
    for bad in ("..", "../secret", "a/../../secret", "/etc", str(tmp_path), "link", "link/x", "~"):
        if bad == "~":  # not expanded: a folder literally named '~' inside root is fine
            assert safe_path(root, bad) == (root / "~").resolve()
            continue
        with pytest.raises(IclensError, match="outside"):
            safe_path(root, bad)


@pytest.fixture
def results(explorer_env, tmp_path):
    out = explorer_env["out"]
    write_json(out / "induction" / "result.json", {"model": "tiny-llama", "icl_score": -1.25})
    write_report(out / "induction" / "report.html", "Induction heads", [Section("Scores", "a known sentence 42", [])])
    write_json(out / "deep" / "run1" / "result.json", {"k": [1, 2, 3]})
    secret = tmp_path / "secret"
    write_json(secret / "result.json", {"secret": True})
    os.symlink(secret, out / "escape")                       # a folder link pointing outside
    os.symlink(secret / "result.json", out / "deep" / "result.json")  # a file link pointing outside
    return out


def test_reports_page_lists_and_opens(app, results):
    app.switch_page("views/reports.py").run()
    assert not app.exception and [e.value for e in app.error] == []
    pick = app.selectbox(key="reports_pick")
    assert pick.options == ["deep/run1", "induction"]  # links leading outside are not listed
    pick.set_value("induction").run()
    assert app.json[0].value == json.dumps({"model": "tiny-llama", "icl_score": -1.25}) or \
        json.loads(app.json[0].value) == {"model": "tiny-llama", "icl_score": -1.25}
    frames = app.get("iframe")
    assert len(frames) == 1 and "a known sentence 42" in frames[0].proto.srcdoc
    app.selectbox(key="reports_pick").set_value("deep/run1").run()
    assert json.loads(app.json[0].value) == {"k": [1, 2, 3]} and len(app.get("iframe")) == 0


@pytest.mark.parametrize("typed, expect", [
    ("..", "outside"), ("../secret", "outside"), ("/etc", "outside"), ("escape", "outside"),
    ("nowhere", "is not a folder"),
])
def test_reports_page_refuses_paths_outside(app, results, typed, expect):
    app.switch_page("views/reports.py").run()
    app.text_input(key="reports.reports_sub").input(typed).run()
    assert not app.exception
    assert len(app.error) == 1 and expect in app.error[0].value
    assert "secret" not in str([j.value for j in app.json])
    app.text_input(key="reports.reports_sub").input("deep").run()  # keeps working
    assert [e.value for e in app.error] == [] and app.selectbox(key="reports_pick").options == ["run1"]


def test_reports_page_empty_folder_and_bad_json(app, explorer_env):
    app.switch_page("views/reports.py").run()
    assert len(app.error) == 1 and "no result.json or report.html" in app.error[0].value
    bad = explorer_env["out"] / "broken" / "result.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    app.run()
    assert len(app.error) == 1 and "not valid JSON" in app.error[0].value
