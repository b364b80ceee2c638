"""AppTest tests of the explorer pages on tiny-llama: widgets, known answers, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from apps.explorer import state
from explorer_testutil import array, errors, figures, frame_with


def test_model_page_widgets_and_known_tokens(app, tiny_model):
    assert errors(app) == []
    assert app.selectbox(key="sidebar.model_choice").value == "tiny-llama"
    assert app.slider(key="model.top_k").value == 10
    app.text_area(key="model.prompt").input("the cat saw the dog").run()
    assert errors(app) == [] and not app.exception

    tokens = frame_with(app, "position")
    assert list(tokens["token"]) == ["<bos>", "the", "cat", "saw", "the", "dog"]
    ids = tiny_model.to_tokens("the cat saw the dog")
    assert list(tokens["id"]) == ids[0].tolist()

    # top-k against a direct forward pass
    with torch.inference_mode():
        logits = tiny_model(ids)
    probs = logits[0, -1].softmax(-1)
    p, idx = probs.topk(10)
    top = frame_with(app, "rank")
    assert list(top["id"]) == idx.tolist()
    assert list(top["token"]) == [tiny_model.tokenizer.convert_ids_to_tokens(i) for i in idx.tolist()]
    np.testing.assert_allclose(top["probability"], p.numpy(), atol=1e-4)

    # loss per token against F.cross_entropy
    loss = frame_with(app, "loss")
    expect = F.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")
    assert list(loss["token"]) == ["the", "cat", "saw", "the", "dog"]
    np.testing.assert_allclose(loss["loss"], expect.numpy(), atol=1e-3)
    assert app.metric[0].value == f"{expect.mean().item():.3f}"

    app.slider(key="model.top_k").set_value(3).run()
    assert len(frame_with(app, "rank")) == 3


@pytest.mark.parametrize("prompt, expect", [
    ("", "prompt is empty"),
    ("   ", "prompt is empty"),
    (" ".join(["the"] * 130), "context is 128 tokens"),
])
def test_model_page_bad_prompt_shows_one_line_error(app, prompt, expect):
    app.text_area(key="model.prompt").input(prompt).run()
    assert not app.exception
    assert len(app.error) == 1 and expect in app.error[0].value
    app.text_area(key="model.prompt").input("a cat").run()  # the app keeps working
    assert errors(app) == [] and list(frame_with(app, "position")["token"]) == ["<bos>", "a", "cat"]


@pytest.mark.parametrize("typed, expect", [
    ("no-such-model", "cannot load model 'no-such-model'"),
    ("../../etc", "looks like a local folder"),
    ("/tmp", "looks like a local folder"),
    ("", "no model name given"),
])
def test_bad_model_name_shows_error_and_recovers(app, typed, expect):
    app.selectbox(key="sidebar.model_choice").set_value(state.OTHER_MODEL).run()
    app.text_input(key="sidebar.model_typed").input(typed).run()
    assert not app.exception
    assert len(app.error) == 1 and expect in app.error[0].value, errors(app)
    app.selectbox(key="sidebar.model_choice").set_value("tiny-llama").run()
    assert errors(app) == [] and frame_with(app, "rank") is not None


def test_attention_page_pattern_matches_hook(app, tiny_model):
    app.text_area(key="model.prompt").input("the cat saw the dog").run()
    app.switch_page("views/attention.py").run()
    assert errors(app) == [] and not app.exception
    # the prompt survives the page switch
    assert app.text_area(key="attention.prompt").value == "the cat saw the dog"
    app.number_input(key="attention.layer").set_value(1).run()
    app.number_input(key="attention.head").set_value(2).run()
    fig = figures(app)[0]
    _, cache = tiny_model.run_with_cache(tiny_model.to_tokens("the cat saw the dog"),
                                         names_filter="blocks.1.attn.hook_pattern")
    expect = cache["blocks.1.attn.hook_pattern"][0, 2].numpy()
    np.testing.assert_allclose(array(fig["data"][0]["z"]), expect, atol=2e-3)  # float16 storage
    assert fig["data"][0]["x"] == ["0:<bos>", "1:the", "2:cat", "3:saw", "4:the", "5:dog"]
    # the repeated-token example shows the chosen head, on [BOS] R R with R of the chosen length
    ex = figures(app)[1]
    assert "layer 1, head 2" in ex["layout"]["title"]["text"] and len(ex["data"][0]["x"]) == 1 + 2 * 12


def test_attention_page_head_scan_matches_library(app, tiny_model):
    from probes.induction import scan

    app.switch_page("views/attention.py").run()
    app.number_input(key="attention.scan_prompts").set_value(4).run()
    app.number_input(key="attention.scan_len").set_value(8).run()
    assert len(app.get("plotly_chart")) == 2  # prompt pattern + example, no scores before the button
    app.button(key="run_scan").click().run()
    assert errors(app) == [] and not app.exception
    figs = figures(app)
    titles = [f["layout"]["title"]["text"] for f in figs]
    for t in ("induction", "previous token", "duplicate token", "2-gram", "3-gram", "4-gram"):
        assert t in titles
    res = scan(tiny_model, n_prompts=4, seq_len=8, seed=0, batch_size=4)
    shown = next(f for f in figs if f["layout"]["title"]["text"] == "induction")
    np.testing.assert_allclose(array(shown["data"][0]["z"]), res.scores["induction"].mean, atol=1e-5)
    top = frame_with(app, "induction score")
    assert [(int(a), int(b)) for a, b in zip(top["layer"], top["head"])] == [(L, H) for L, H, _ in res.top("induction", 5)]
    # back from another page: the scan comes from the cache, drawn again without error
    app.switch_page("views/model.py").run()
    app.switch_page("views/attention.py").run()
    assert errors(app) == [] and len(app.get("plotly_chart")) == len(figs)


def test_switching_pages_reuses_cached_forward_passes(app):
    """Switching back and forth between pages runs no forward pass a second time."""
    model = state._load("tiny-llama", "cpu")
    calls = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(1))
    try:
        app.text_area(key="model.prompt").input("alice saw bob . alice saw").run()
        app.switch_page("views/attention.py").run()
        app.switch_page("views/model.py").run()
        first = len(calls)
        assert first >= 1
        for page in ("views/attention.py", "views/model.py", "views/attention.py", "views/reports.py", "views/model.py"):
            app.switch_page(page).run()
            assert not app.exception
        assert len(calls) == first
        # a choice made in the sidebar survives page switches too
        app.selectbox(key="sidebar.model_choice").set_value("tiny-gpt2").run()
        app.switch_page("views/attention.py").run()
        assert app.selectbox(key="sidebar.model_choice").value == "tiny-gpt2"
        assert any(c.value.startswith("**tiny-gpt2**: 2 layers") for c in app.caption)
    finally:
        handle.remove()
