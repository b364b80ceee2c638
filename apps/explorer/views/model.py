"""Page 1, Model & prompt: tokens, next-token top-k with probabilities, loss per token."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from apps.explorer import state

st.title("Model & prompt")
st.caption("Pick a model in the sidebar, type a prompt: its tokens, what the model predicts next, "
           "and how surprised it was by each token of the prompt.")

prompt = state.prompt_box("model")
k = st.slider("top-k", 1, 50, key=state.remembered("top_k", state.DEFAULT_TOP_K, "model"))
st.session_state["top_k"] = k

with state.guard():
    name = state.model_name()
    state.get_model(name)
    s = state.prompt_summary(name, state.settings().device, prompt, k)

    st.subheader(f"Tokens ({len(s['tokens'])})")
    st.dataframe({"position": list(range(len(s["tokens"]))), "token": s["tokens"], "id": s["ids"]},
                 hide_index=True, height=min(400, 38 + 35 * len(s["tokens"])))

    st.subheader("Next token after the prompt")
    left, right = st.columns([2, 3])
    top = s["topk"]
    left.dataframe({"rank": [r["rank"] for r in top], "token": [r["token"] for r in top],
                    "id": [r["id"] for r in top], "probability": [round(r["probability"], 4) for r in top]},
                   hide_index=True, key="topk_table")
    bar = go.Figure(go.Bar(x=[r["probability"] for r in top][::-1], y=[repr(r["token"]) for r in top][::-1],
                           orientation="h", hovertemplate="%{y}: %{x:.4f}<extra></extra>"))
    bar.update_layout(height=max(240, 24 * len(top) + 80), margin={"t": 20, "l": 10}, xaxis_title="probability")
    right.plotly_chart(bar, key="topk_chart")

    st.subheader("Loss per token")
    if s["loss"]:
        st.metric("mean loss (nats)", f"{s['mean_loss']:.3f}")
        loss = s["loss"]
        fig = go.Figure(go.Bar(x=[f"{r['position']}:{r['token']}" for r in loss], y=[r["loss"] for r in loss],
                               hovertemplate="%{x}<br>loss %{y:.3f}<extra></extra>"))
        fig.update_layout(height=320, margin={"t": 20}, yaxis_title="loss (nats)", xaxis_title="token predicted")
        st.plotly_chart(fig, key="loss_chart")
        st.dataframe({"position": [r["position"] for r in loss], "token": [r["token"] for r in loss],
                      "loss": [round(r["loss"], 4) for r in loss], "probability": [round(r["probability"], 4) for r in loss]},
                     hide_index=True, key="loss_table")
    else:
        st.info("a one-token prompt has no token to predict: type a longer prompt to see the loss per token.")
