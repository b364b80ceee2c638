"""Function-tokens page: a real `iclens probe function-tokens` run's figures equal its result.json; token types and
loss by transition on a typed text equal a direct forward pass; bad input is one st.error; nothing outside the folder."""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explorer_testutil import array, by_title, errors, frame_with

PAGE = "views/function_tokens.py"
WORDS = "the a of to and in cat dog saw ran big red . , house ball went took".split()
ARGS = ["--model", "tiny-llama", "--layer", "1", "--max-tokens", "1024", "--seq-len", "32", "--expansion", "2",
        "--k", "4", "--epochs", "1", "--loss-tokens", "512", "--positions", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def ft_run(tmp_path_factory):
    """One tiny function-tokens run made by the CLI (shared by the tests; each copies what the page reads)."""
    from apps.cli import main

    base = tmp_path_factory.mktemp("ft")
    rng = random.Random(0)
    corpus = base / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(15)) for _ in range(120)) + "\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(["probe", "function-tokens", "--corpus", str(corpus), "--out", str(base / "run"), *ARGS])
    finally:
        torch.set_num_threads(threads)
    return base / "run"


def copy_run(src, dst):
    (dst / "sae").mkdir(parents=True)
    shutil.copy(src / "result.json", dst / "result.json")
    shutil.copy(src / "sae" / "sae.json", dst / "sae" / "sae.json")
    return dst


@pytest.fixture
def ft_out(explorer_env, ft_run):
    """The output folder holding the run at ft/, plus decoys the page must not list."""
    out = explorer_env["out"]
    copy_run(ft_run, out / "ft")
    (out / "other").mkdir()
    (out / "other" / "result.json").write_text('{"icl_score": 1.0}')  # another command's result: not a run
    secret = copy_run(ft_run, explorer_env["runs"].parent / "secret")
    os.symlink(secret, out / "escape")  # a link to a run outside the output folder
    return out


def test_run_figures_equal_result_json(app, ft_out):
    app.switch_page(PAGE).run()
    assert errors(app) == [] and not app.exception
    assert app.selectbox(key="ft_pick").options == ["ft"]  # not 'other' (no SAE), not the link leading outside
    res = json.loads((ft_out / "ft" / "result.json").read_text())
    h = res["headline"]
    shown = [m.value for m in app.metric]
    keys = ("top10_tokens_alive_feature_fraction", "top10_function_tokens_alive_feature_fraction",
            "top10_content_tokens_alive_feature_fraction")
    assert shown == [f"{h[k]:.1%}" for k in keys] + [f"{h['fve']:.3f}"]
    figs = by_title(app)
    cov = res["graph"]["coverage"]
    traces = {t["name"]: t for t in figs["Alive features activated by the k most frequent tokens"]["data"]}
    for name in ("all", "function", "content"):
        t = traces[f"top-k {name} tokens"]
        assert list(array(t["x"]).astype(int)) == [int(k) for k in cov["all"]]
        np.testing.assert_allclose(array(t["y"]), [cov[name][k] for k in cov["all"]])
    bars = {t["name"]: t for t in figs["Loss by token transition (type read -> type predicted)"]["data"]}
    tr = res["transitions"]
    assert bars["share of total loss"]["x"] == list(tr["count"])
    np.testing.assert_allclose(array(bars["share of total loss"]["y"]), [tr["loss_share"][k] for k in tr["count"]])
    np.testing.assert_allclose(array(bars["share of predictions"]["y"]), [tr["token_share"][k] for k in tr["count"]])
    g = res["graph"]
    deg = {t["name"]: t for t in figs["Token degree in the token-feature graph vs frequency rank"]["data"]}
    n_fn = sum(1 for d, f in zip(g["degree"], g["is_function"]) if f and d > 0)
    assert len(array(deg["function tokens"]["y"])) == n_fn
    assert "Ablating the top 5 SAE features at one position" in figs


def test_text_types_and_losses_match_a_forward_pass(app, ft_out, tiny_model):
    text = "the cat saw the dog . a big house"
    app.switch_page(PAGE).run()
    app.text_area(key="ft.prompt").input(text).run()
    assert errors(app) == [] and not app.exception
    table = frame_with(app, "category")
    assert list(table["token"]) == ["<bos>", *text.split()]
    assert list(table["category"]) == ["special", "article", "content", "content", "article", "content", "punctuation",
                                       "article", "content", "content"]
    ids = tiny_model.to_tokens(text)
    with torch.inference_mode():
        loss = F.cross_entropy(tiny_model(ids)[0, :-1], ids[0, 1:], reduction="none").numpy()
    np.testing.assert_allclose(table["loss"].to_numpy()[1:].astype(float), loss, atol=1e-3)
    # grouped by hand: types F F C C F C F F C C; the prediction made at BOS is left out
    kind = ["function" if c != "content" else "content" for c in table["category"]]
    groups: dict[str, list[float]] = {}
    for p in range(2, len(kind)):
        groups.setdefault(f"{kind[p - 1]}->{kind[p]}", []).append(float(loss[p - 1]))
    assert {k: len(v) for k, v in groups.items()} == {"function->content": 3, "content->content": 2,
                                                      "content->function": 2, "function->function": 1}
    shown = frame_with(app, "share of loss").set_index("transition")
    total = sum(sum(v) for v in groups.values())
    for k, v in groups.items():
        assert shown.loc[k, "predictions"] == len(v)
        assert shown.loc[k, "mean loss"] == pytest.approx(np.mean(v), abs=1e-4)
        assert shown.loc[k, "share of loss"] == pytest.approx(sum(v) / total, abs=1e-5)


@pytest.mark.parametrize("typed, expect", [
    ("..", "outside"), ("../secret", "outside"), ("/etc", "outside"), ("escape", "outside"),
    ("nowhere", "is not a folder"), ("other", "no function-tokens result"),
])
def test_bad_folder_is_one_error_and_nothing_outside_is_read(app, ft_out, typed, expect):
    app.switch_page(PAGE).run()
    app.text_input(key="ft.ft_sub").input(typed).run()
    assert not app.exception
    assert len(app.error) == 1 and expect in app.error[0].value, errors(app)
    assert "Token degree in the token-feature graph vs frequency rank" not in by_title(app)
    app.text_input(key="ft.ft_sub").input("ft").run()  # keeps working
    assert errors(app) == [] and app.selectbox(key="ft_pick").options == ["."]


def test_empty_text_is_one_error(app, ft_out):
    app.switch_page(PAGE).run()
    app.text_area(key="ft.prompt").input("   ").run()
    assert not app.exception
    assert len(app.error) == 1 and "prompt is empty" in app.error[0].value
    assert "Loss per token (red: function, blue: content)" not in by_title(app)
