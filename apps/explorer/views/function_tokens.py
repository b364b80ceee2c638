"""Page, Function tokens: a finished `iclens probe function-tokens` run's figures; function/content tokens and
loss by transition on your own text (Zhang, Lin & Li 2025; library: probes.function_tokens, probes.transitions)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from apps.explorer import compute, state
from apps.figures import function_tokens as ftfig
from probes.errors import IclensError
from probes.results import to_jsonable

MAX_RUNS = 200
TYPE_COLORS = {"function": "#fde0dd", "content": "#deebf7"}

st.title("Function tokens")
root = state.settings().out_dir
st.caption("Function tokens (punctuation, articles, prepositions, conjunctions, auxiliaries, special tokens) "
           "activate most features of a middle layer, and predicting the content token after them carries much of "
           "the loss (Zhang, Lin & Li 2025). Word lists and rules: `probes/function_tokens.py`.")


def find_ft_runs(folder: Path, base: Path) -> list[str]:
    """Function-token run folders under `folder` (result.json beside sae/sae.json, as the CLI writes), relative to it.

    Folders whose result.json resolves outside `base` (a link) are skipped.
    """
    runs = []
    for i, res in enumerate(sorted(folder.rglob("result.json"))):
        if i >= MAX_RUNS:
            break
        if (res.parent / "sae" / "sae.json").is_file() and res.resolve().is_relative_to(base):
            runs.append(str(res.parent.relative_to(folder)) or ".")
    return runs


@st.cache_data(max_entries=16, show_spinner=False)
def read_result(path: str, mtime: int) -> dict[str, Any]:
    """A run's result.json, cached by path and modification time."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as e:
        raise IclensError(f"{path} is not valid JSON ({e}): re-run `iclens probe function-tokens` there.") from None
    if not isinstance(data, dict) or "graph" not in data or "headline" not in data:
        raise IclensError(f"{path} is not a function-tokens result: "
                          "pick a folder written by `iclens probe function-tokens`.")
    return data


@st.cache_resource(max_entries=4, show_spinner=False)
def vocab_categories(name: str, device: str, _model) -> tuple[list[str], Any]:
    """Category of every token id of the model (one batched decode, ~2 s for Gemma's 262k ids) and the function mask."""
    from probes.function_tokens import function_mask_from_categories, token_categories

    cats = token_categories(_model.tokenizer, int(_model.cfg.d_vocab))
    return cats, function_mask_from_categories(cats)


@st.cache_data(max_entries=32, show_spinner=False)
def text_transitions(name: str, device: str, text: str, _model) -> dict[str, Any]:
    """Each token's category and next-token loss on `text`, and the losses grouped by transition (one forward pass)."""
    from probes.transitions import per_token_loss, transition_stats

    cats, fmask = vocab_categories(name, device, _model)
    tokens = compute.tokenize(_model, text).cpu()
    if tokens.shape[1] < 2:
        raise IclensError("the text has a single token, so nothing is predicted: type a longer text.")
    losses = per_token_loss(_model, tokens, batch_size=1)
    bos = getattr(_model.tokenizer, "bos_token_id", None)
    has_bos = bos is not None and int(tokens[0, 0]) == bos
    stats = transition_stats(tokens, losses, fmask, skip_first=has_bos)
    ids = tokens[0].tolist()
    kind = ["function" if bool(fmask[i]) else "content" for i in ids]
    rows = []
    for p, (tok, i) in enumerate(zip(compute.str_tokens(_model, tokens), ids)):
        if p == 0:
            trans, loss = "", None
        elif p == 1 and has_bos:
            trans, loss = "(after BOS: not counted)", float(losses[0, 0])
        else:
            trans, loss = f"{kind[p - 1]}->{kind[p]}", float(losses[0, p - 1])
        rows.append({"position": p, "token": tok, "id": i, "category": cats[i], "type": kind[p], "loss": loss,
                     "transition": trans})
    return {"rows": rows, "stats": to_jsonable(asdict(stats))}


tab_run, tab_text = st.tabs(["A probe run", "Your text"])

with tab_run, state.guard():
    folder = state.folder_box(root, "ft_sub", "ft", label="Folder (inside the output folder)",
                              placeholder="e.g. function_tokens",
                              missing_root=f"run `iclens probe function-tokens --out {root}/NAME` or start the "
                                           "explorer with --out-dir pointing at your results.")
    runs = find_ft_runs(folder, root)
    if not runs:
        raise IclensError(f"no function-tokens result under {folder}: run `iclens probe function-tokens --corpus FILE "
                          f"--layer L --out {folder}/function_tokens` first.")
    pick = st.selectbox(f"Run ({len(runs)})", runs, key="ft_pick")
    path = state.safe_path(folder, pick) / "result.json"
    res = read_result(str(path), path.stat().st_mtime_ns)
    h, g = res["headline"], res["graph"]
    st.caption(f"**{res.get('model', '?')}**, `{res.get('hook', '?')}`, {res.get('n_tokens', '?')} corpus tokens; "
               f"{g['n_token_types']} token types, {g['n_alive']} alive SAE features")
    c = st.columns(4)
    c[0].metric("top-10 tokens: alive features", f"{h['top10_tokens_alive_feature_fraction']:.1%}")
    c[1].metric("top-10 function tokens", f"{h['top10_function_tokens_alive_feature_fraction']:.1%}")
    c[2].metric("top-10 content tokens", f"{h['top10_content_tokens_alive_feature_fraction']:.1%}")
    c[3].metric("SAE FVE", f"{h['fve']:.3f}")
    a, b = st.columns(2)
    a.plotly_chart(ftfig.degree_rank_figure(g, res.get("token_texts")), key="ft_degree")
    b.plotly_chart(ftfig.coverage_figure(g), key="ft_coverage")
    a, b = st.columns(2)
    if res.get("transitions"):
        a.plotly_chart(ftfig.transition_figure(res["transitions"]), key="ft_transitions")
    else:
        a.info("this run skipped the loss by transition (--loss-tokens 0).")
    if res.get("retrieval"):
        b.plotly_chart(ftfig.retrieval_figure(res["retrieval"]), key="ft_retrieval")
    else:
        b.info("this run skipped the memory-retrieval ablation (--positions 0).")
    if res.get("toy_lm"):
        a, b = st.columns(2)
        a.plotly_chart(ftfig.toy_transition_figure(res["toy_lm"]), key="ft_toy")
        b.plotly_chart(ftfig.toy_share_figure(res["toy_lm"]), key="ft_toy_share")
    st.caption(f"The full report: {path.parent / 'report.html'} (Reports page).")

with tab_text, state.guard():
    st.markdown("Each token of your text classified as function or content, and the model's loss on predicting it, "
                "grouped by the transition (type of the token read -> type of the token predicted).")
    text = state.prompt_box("ft", label="Text")
    name = state.model_name()
    model = state.get_model(name)
    device = state.settings().device
    out = text_transitions(name, device, text, model)
    rows, stats = out["rows"], out["stats"]
    table = {k: [r[k] for r in rows] for k in ("position", "token", "category", "type", "transition")}
    table["loss"] = [None if r["loss"] is None else round(r["loss"], 4) for r in rows]
    frame = pd.DataFrame(table)
    st.dataframe(frame.style.apply(lambda r: [f"background-color: {TYPE_COLORS[r['type']]}"] * len(r), axis=1),
                 hide_index=True, key="ft_tokens", height=min(400, 38 + 35 * len(rows)))
    names = list(stats["count"])
    st.dataframe({"transition": names, "predictions": [stats["count"][n] for n in names],
                  "mean loss": [stats["mean_loss"][n] for n in names],
                  "share of loss": [stats["loss_share"][n] for n in names]}, hide_index=True, key="ft_groups")
    a, b = st.columns(2)
    mine = ftfig.transition_figure(stats).update_layout(title="Loss by transition on your text")
    a.plotly_chart(mine, key="ft_text_transitions")
    scored = [r for r in rows if r["loss"] is not None]
    bars = go.Figure(go.Bar(x=[f"{r['position']}:{r['token']}" for r in scored], y=[r["loss"] for r in scored],
                            marker_color=["#d62728" if r["type"] == "function" else "#1f77b4" for r in scored],
                            hovertemplate="%{x}<br>loss %{y:.3f}<extra></extra>"))
    bars.update_layout(title="Loss per token (red: function, blue: content)", height=380, margin={"t": 50},
                       yaxis_title="loss (nats)", xaxis_title="token predicted")
    b.plotly_chart(bars, key="ft_text_loss")
