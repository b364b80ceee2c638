"""Page 4, Toy models: training runs (curves, error vs k against baselines, attention across checkpoints); start one."""

from __future__ import annotations

import streamlit as st

from apps.explorer import state, toy_runs
from apps.figures import toy as toyfig
from apps.figures.common import attention_pattern, layer_head_heatmap
from probes.errors import IclensError

st.title("Toy models")
root = state.settings().runs_dir
st.caption(f"Training runs written by `iclens train ... --out DIR` under `{root}`.")

tab_runs, tab_train = st.tabs(["Runs", "Start a short run"])

with tab_runs, state.guard():
    if not root.is_dir():
        raise IclensError(f"the runs folder {root} does not exist: start a run in the next tab, or start the explorer "
                          "with --runs-dir pointing at your runs.")
    runs = toy_runs.find_runs(root)
    if not runs:
        raise IclensError(f"no training runs under {root} (folders with config.json and checkpoint.json): start one in "
                          f"the next tab, or run `iclens train linreg --out {root}/NAME`.")
    pick = st.selectbox(f"Run ({len(runs)})", runs, key=state.remembered("toy_run", runs[-1], "toy"))
    st.session_state["toy_run"] = pick
    run_dir = state.safe_path(root, pick)
    info = state.toy_summary(str(run_dir), run_dir.stat().st_mtime_ns)
    st.caption(f"experiment **{info['experiment']}**; checkpoints at steps {info['steps']}; "
               + ("finished (result.json)" if info["finished"] else "unfinished: curves from its latest checkpoint"))
    if info["losses"]:
        st.plotly_chart(toyfig.training_curve(info["losses"], info["evals"]), key="toy_training")
    curve = info.get("error_vs_k")
    if curve is None and info["experiment"] == "linreg":
        curve = state.toy_error_curve(str(run_dir), run_dir.stat().st_mtime_ns)
    if curve:
        d = info["config"].get("run", {}).get("d")
        st.plotly_chart(toyfig.error_vs_k(curve, "error vs in-context examples", d=d), key="toy_error_vs_k")
    if info["experiment"] == "linreg" and info["steps"]:
        step = st.select_slider("checkpoint step", options=info["steps"], value=info["steps"][-1], key="toy_step")
        att = state.toy_attention(str(run_dir), int(step), run_dir.stat().st_mtime_ns)
        if "lsa_matrix" in att:
            st.plotly_chart(toyfig.matrix_heatmap(att["lsa_matrix"], f"LSA effective matrix at step {step}"),
                            key="toy_lsa")
        else:
            a, b = st.columns(2)
            a.plotly_chart(layer_head_heatmap(att["attn_to_y"], f"query's attention on y tokens, step {step}",
                                              zlabel="share"), key="toy_to_y")
            b.plotly_chart(layer_head_heatmap(att["attn_to_x"], f"query's attention on x tokens, step {step}",
                                              zlabel="share"), key="toy_to_x")
            st.plotly_chart(toyfig.query_attention(att["query_attention"], f"attention from the query x, step {step}"),
                            key="toy_query")
            n_layers = len(att["sample_pattern"])
            layer = st.slider("layer", 0, n_layers - 1, 0, key="toy_layer") if n_layers > 1 else 0
            pat = att["sample_pattern"][layer]
            labels = [f"{'x' if j % 2 == 0 else 'y'}{j // 2}" for j in range(len(pat))]
            st.plotly_chart(attention_pattern(pat, labels, f"layer {layer} (head mean), one prompt, step {step}"),
                            key="toy_pattern")

with tab_train, state.guard():
    st.markdown("In-context linear regression (Garg et al. 2022 GPT-style model, or Zhang, Frei & Bartlett's linear "
                "self-attention). Short runs on the CPU; use `iclens train linreg` for real ones.")
    a, b, c = st.columns(3)
    name = a.text_input("run name (a folder inside the runs folder)", key="toy_new_name", placeholder="linreg-demo")
    kind = b.selectbox("model", ["gpt", "lsa"], key="toy_new_model")
    steps = c.number_input("steps", 10, 5000, 200, key="toy_new_steps")
    a, b, c = st.columns(3)
    d = a.number_input("dimension d", 1, 10, 3, key="toy_new_d")
    n_layers = b.number_input("layers (gpt)", 1, 4, 2, key="toy_new_layers")
    seed = c.number_input("seed", 0, 10_000, 0, key="toy_new_seed")
    if st.button("Train", type="primary", key="toy_train"):
        if not name.strip():
            raise IclensError("type a run name: the run is written to a new folder of that name inside the runs folder.")
        target = state.safe_path(root, name)
        if target == root:
            raise IclensError("type a run name: the runs folder itself cannot hold a new run.")
        bar, update = state.progress_bar("training")
        toy_runs.start_linreg(target, model=kind, d=int(d), steps=int(steps), n_layers=int(n_layers), seed=int(seed),
                              progress=update)
        bar.empty()
        st.session_state["toy_run"] = str(target.relative_to(root))
        st.session_state.pop("toy.toy_run", None)
        st.success(f"trained {target.relative_to(root)}; it is selected in the Runs tab.")
