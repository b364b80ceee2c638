"""Page 3, Attribution: activation / attribution patching on a task or a typed clean/corrupted pair."""

from __future__ import annotations

import streamlit as st

from apps.explorer import state
from apps.figures.circuits import agreement_scatter, circuit_graph, head_map, resid_map

st.title("Attribution")
st.caption("Which heads and residual-stream positions carry the answer: each component's clean activation is "
           "written into the corrupted run (activation patching, exact) or estimated from one backward pass "
           "(attribution patching). 1 = restores the clean answer, 0 = does nothing.")

with state.guard():
    from circuits.tasks import TASKS

    name = state.model_name()
    model = state.get_model(name)
    device = state.settings().device
    source = st.radio("Prompts", ["built-in task", "my own pair"], horizontal=True,
                      key=state.remembered("attr_source", "built-in task", "attribution"))
    st.session_state["attr_source"] = source
    if source == "built-in task":
        a, b = st.columns(2)
        task = a.selectbox("task", TASKS, key=state.remembered("attr_task", "induction", "attribution"))
        n_prompts = b.number_input("prompt pairs", 2, 64, key=state.remembered("attr_n", 4, "attribution"))
        st.session_state["attr_task"], st.session_state["attr_n"] = task, int(n_prompts)
        spec = (("task", task), ("n_prompts", int(n_prompts)), ("seed", 0))
    else:
        a, b = st.columns(2)
        clean = a.text_input("clean prompt", key=state.remembered("attr_clean", "alice gave the ball to", "attribution"))
        corrupted = b.text_input("corrupted prompt", key=state.remembered("attr_corrupted", "bob gave the ball to", "attribution"))
        answer = a.text_input("answer (one token, with its leading space)",
                              key=state.remembered("attr_answer", " bob", "attribution"))
        wrong = b.text_input("wrong answer", key=state.remembered("attr_wrong", " alice", "attribution"))
        for k, v in (("attr_clean", clean), ("attr_corrupted", corrupted), ("attr_answer", answer), ("attr_wrong", wrong)):
            st.session_state[k] = v
        spec = (("clean", clean), ("corrupted", corrupted), ("answer", answer), ("wrong", wrong))
    c, d, e = st.columns(3)
    method = c.selectbox("method", ["attribution", "both", "activation"],
                         key=state.remembered("attr_method", "attribution", "attribution"),
                         help="attribution: one backward pass (fast). activation: exact, one forward pass per "
                              "component (minutes on a CPU for an 18-layer model). both: also their agreement.")
    threshold = d.slider("circuit keeps", 0.1, 1.0, key=state.remembered("attr_threshold", 0.8, "attribution"))
    ablation = e.selectbox("ablation outside the circuit", ["resample", "mean", "zero"],
                           key=state.remembered("attr_ablation", "resample", "attribution"))
    st.session_state.update(attr_method=method, attr_threshold=threshold, attr_ablation=ablation)
    params = (name, device, spec, method, float(threshold), ablation)
    res = state.run_button("Run patching", "run_patching", params, state.patching_study, "patching")
    if res is not None:
        st.write(f"clean logit difference **{res['clean_ld']:.3f}**, corrupted **{res['corrupted_ld']:.3f}** "
                 f"({res['task']['n_prompts']} prompt pairs of {res['task']['n_pos']} tokens)")
        cols = st.columns(2)
        for i, (m, maps) in enumerate(res["maps"].items()):
            cols[i % 2].plotly_chart(head_map(maps["heads"], f"{m} patching: heads"), key=f"heads_{m}")
        for m, maps in res["maps"].items():
            st.plotly_chart(resid_map(maps["resid"], res["str_tokens"], f"{m} patching: residual stream"), key=f"resid_{m}")
        if res["agreement"]:
            n_l, n_h = model.cfg.n_layers, model.cfg.n_heads
            labels = [f"L{L}H{H}" for L in range(n_l) for H in range(n_h)]
            a, b = st.columns(2)
            a.plotly_chart(agreement_scatter(res["maps"]["activation"]["heads"], res["maps"]["attribution"]["heads"],
                                             "heads: attribution vs activation", labels), key="agree_heads")
            b.plotly_chart(agreement_scatter(res["maps"]["activation"]["resid"], res["maps"]["attribution"]["resid"],
                                             "residual stream: attribution vs activation"), key="agree_resid")
            st.caption("; ".join(f"{k}: Spearman {v['spearman']:.3f}, Pearson {v['pearson']:.3f}"
                                 for k, v in res["agreement"].items() if v.get("spearman") is not None))
        circ = res["circuit"]
        st.subheader(f"Circuit: {len(circ['heads'])} heads, faithfulness {circ['faithfulness']:.3f}")
        st.plotly_chart(circuit_graph(circ["heads"], res["edges"], model.cfg.n_layers, model.cfg.n_heads,
                                      f"found circuit ({circ['method']} search, {circ['ablation']} ablation)"),
                        key="circuit_graph")
