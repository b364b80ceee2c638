"""Page 2, Attention & heads: patterns on the prompt, layer x head score maps, one head on a repeated example."""

from __future__ import annotations

import streamlit as st

from apps.explorer import state
from apps.figures.common import attention_pattern, layer_head_heatmap

st.title("Attention & heads")
st.caption("Where each head looks on your prompt; which heads behave as previous-token, duplicate-token, "
           "induction or n-gram heads on synthetic prompts (probes.induction.scan).")

SCORE_TITLES = {
    "induction": "induction", "previous_token": "previous token", "duplicate_token": "duplicate token",
    "ngram_2": "2-gram", "ngram_3": "3-gram", "ngram_4": "4-gram", "dla": "direct logit attribution",
}

with state.guard():
    name = state.model_name()
    model = state.get_model(name)
    device = state.settings().device
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads

    c1, c2 = st.columns(2)
    layer = c1.number_input("layer", 0, n_layers - 1, key=state.remembered("layer", 0, "attention"))
    head = c2.number_input("head", 0, n_heads - 1, key=state.remembered("head", 0, "attention"))
    st.session_state["layer"], st.session_state["head"] = int(layer), int(head)

    tab_prompt, tab_scores, tab_example = st.tabs(["Pattern on the prompt", "Head scores", "Head on a repeated example"])

    with tab_prompt, state.guard():
        prompt = state.prompt_box("attention")
        att = state.attention_patterns(name, device, prompt)
        st.plotly_chart(attention_pattern(att["patterns"][layer, head].astype(float), att["tokens"],
                                          f"layer {layer}, head {head}"), key="prompt_pattern")

    with tab_scores, state.guard():
        st.markdown("Scores per head, mean over prompts of random repeated tokens ([BOS] R R) and of "
                    "small-alphabet sequences for n-grams. Definitions: `probes/head_scores.py`.")
        a, b, c = st.columns(3)
        n_prompts = a.number_input("prompts", 1, 64, key=state.remembered("scan_prompts", 8, "attention"))
        seq_len = b.number_input("repeated length", 4, 256, key=state.remembered("scan_len", 32, "attention"))
        seed = c.number_input("seed", 0, 10_000, key=state.remembered("scan_seed", 0, "attention"))
        params = (name, device, int(n_prompts), int(seq_len), int(seed))
        for key, v in zip(("scan_prompts", "scan_len", "scan_seed"), params[2:]):
            st.session_state[key] = v
        res = state.run_button("Run head scan", "run_scan", params, state.induction_scan, "scanning heads")
        if res is not None:
            st.write(f"ICL score (second-copy loss - first-copy loss): **{res.icl_score:.3f}** nats "
                     f"({res.first_half_loss:.2f} -> {res.second_half_loss:.2f})")
            names = [n for n in SCORE_TITLES if n in res.scores]
            cols = st.columns(2)
            for i, sname in enumerate(names):
                fig = layer_head_heatmap(res.scores[sname].mean, SCORE_TITLES[sname],
                                         colorscale="RdBu" if sname == "dla" else "Blues",
                                         zmid=0.0 if sname == "dla" else None)
                cols[i % 2].plotly_chart(fig, key=f"scores_{sname}")
            top = res.top("induction", min(5, n_layers * n_heads))
            st.dataframe({"layer": [t[0] for t in top], "head": [t[1] for t in top],
                          "induction score": [round(t[2], 4) for t in top]}, hide_index=True, key="top_induction")

    with tab_example, state.guard():
        ex_len = st.slider("length of the repeated block", 4, 64, key=state.remembered("example_len", 12, "attention"))
        st.session_state["example_len"] = ex_len
        ex = state.repeated_example(name, device, int(layer), int(ex_len), 0)
        st.caption("An induction head attends from each token of the second copy to the token after its "
                   "first occurrence (a stripe below the diagonal); a previous-token head to the token before.")
        st.plotly_chart(attention_pattern(ex["patterns"][head], ex["tokens"],
                                          f"layer {layer}, head {head} on [BOS] R R"), key="example_pattern")
