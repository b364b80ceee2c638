"""Figures for in-context vs in-weights learning: transition curves, ablation, nested-logit fit,
phase diagrams (Reddy 2023) and forgetting-schedule curves (Anand et al. 2024)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from apps.figures.common import curves
from toy_models.tasks.pos import POSITION_PRIOR_ACCURACY


def transition_curves(steps: Sequence[float], curve: dict[str, Sequence[float]], transition: dict | None,
                      title: str = "ICL accuracy and the two progress measures") -> go.Figure:
    """ICL / IWL accuracy, previous-token and induction scores on one time axis, the detected transition marked."""
    names = {"icl_acc": "ICL accuracy (novel classes)", "iwl_acc": "IWL accuracy (query class absent)",
             "flip_acc": "flipped-label accuracy", "prev_token_score": "previous-token score (layer 1)",
             "induction_score": "induction score (layer 2)"}
    fig = curves(steps, {v: curve[k] for k, v in names.items() if k in curve}, title, xlabel="training step",
                 ylabel="accuracy / attention score")
    if transition:
        fig.add_vrect(x0=transition["start"], x1=transition["end"], fillcolor="orange", opacity=0.15, line_width=0)
        fig.add_vline(x=transition["step"], line_dash="dash", line_color="orange",
                      annotation_text=f"transition {transition['step']:.0f}")
    fig.update_yaxes(range=[0, 1.05])
    return fig


def nested_logit_fit(fit: dict, measured_loss: Sequence[float], title: str) -> go.Figure:
    """Measured ICL loss against the fitted nested-logit model's loss and its p1, p2, p(correct)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("ICL loss", "nested-logit model"))
    s = fit["steps"]
    fig.add_trace(go.Scatter(x=s, y=list(measured_loss), name="measured ICL loss", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=s, y=fit["predicted_loss"], name="model loss", line={"dash": "dash"}), 1, 1)
    for k, n in (("predicted_p1", "p1 (prev-token attention)"), ("predicted_p2", "p2 (induction attention)"),
                 ("predicted_p_correct", "p(correct label)")):
        fig.add_trace(go.Scatter(x=s, y=fit[k], name=n), 1, 2)
    if fit.get("fit_until") is not None:
        fig.add_vline(x=fit["fit_until"], line_dash="dot", annotation_text="fit window ends")
    fig.update_layout(title=title, height=380, margin={"t": 60})
    fig.update_xaxes(title_text="training step")
    return fig


def ablation_bars(ablation: dict) -> go.Figure:
    """ICL and IWL accuracy intact and with each head zero-ablated, chance marked."""
    conds = [c for c in ablation if c != "chance"]
    fig = go.Figure([go.Bar(name=k.upper(), x=conds, y=[ablation[c][k] for c in conds]) for k in ("icl", "iwl")])
    fig.add_hline(y=ablation["chance"]["icl"], line_dash="dot", annotation_text="chance")
    fig.update_layout(title="Head ablation after training", barmode="group", yaxis_title="accuracy",
                      yaxis_range=[0, 1.05], height=360)
    return fig


def phase_diagram(tables: Sequence[dict], title: str) -> go.Figure:
    """Side-by-side heatmaps of `phase_table` outputs (e.g. final ICL and IWL accuracy over K x eps)."""
    fig = make_subplots(rows=1, cols=len(tables), subplot_titles=[t["metric"] for t in tables])
    for i, t in enumerate(tables, start=1):
        fig.add_trace(go.Heatmap(z=t["z"], x=[str(v) for v in t["x"]], y=[str(v) for v in t["y"]], zmin=0, zmax=1,
                                 colorscale="Viridis", showscale=i == len(tables), texttemplate="%{z:.2f}"), 1, i)
        fig.update_xaxes(title_text=t["x_name"], type="category", row=1, col=i)
        fig.update_yaxes(title_text=t["y_name"], type="category", row=1, col=i)
    fig.update_layout(title=title, height=380, width=max(420, 380 * len(tables)))
    return fig


RUN_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _accuracy_panels(fig: go.Figure, kinds: Sequence[str], title: str) -> go.Figure:
    # a word-blind model (majority role given the copula's position) scores 0.7 on every set
    fig.add_hline(y=POSITION_PRIOR_ACCURACY, line_dash="dot", line_color="grey")
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(title_text="training step")
    fig.update_layout(title=title, height=360, width=max(500, 300 * len(kinds)))
    return fig


def forgetting_curves(runs: dict[str, dict], kinds: Sequence[str], title: str) -> go.Figure:
    """One panel per eval set, one line per schedule: accuracy over training."""
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=list(kinds), shared_yaxes=True)
    for j, (name, evals) in enumerate(runs.items()):
        steps = [e["step"] for e in evals]
        for i, k in enumerate(kinds, start=1):
            fig.add_trace(go.Scatter(x=steps, y=[e[k] for e in evals], name=name, legendgroup=name,
                                     showlegend=i == 1, line={"color": RUN_COLORS[j % len(RUN_COLORS)]}), 1, i)
    return _accuracy_panels(fig, kinds, title)


def live_vs_average(runs: dict[str, list[dict]], kinds: Sequence[str], title: str) -> go.Figure:
    """One panel per eval set; per run, the live weights (solid) and their moving average (dashed: the `ema_<set>`
    entries of a run trained with `ema_decay`)."""
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=list(kinds), shared_yaxes=True)
    for j, (name, evals) in enumerate(runs.items()):
        steps = [e["step"] for e in evals]
        for i, k in enumerate(kinds, start=1):
            for label, key, dash in ((name, k, "solid"), (f"{name}, weight average", f"ema_{k}", "dash")):
                fig.add_trace(go.Scatter(x=steps, y=[e[key] for e in evals], name=label, legendgroup=label,
                                         showlegend=i == 1, line={"color": RUN_COLORS[j % len(RUN_COLORS)],
                                                                  "dash": dash}), 1, i)
    return _accuracy_panels(fig, kinds, title)


def context_by_rank(runs: dict[str, Sequence[dict]], title: str) -> go.Figure:
    """One line per run: the share of words answered from the context, by frequency-rank bin (log axis)."""
    fig = go.Figure()
    for name, bins in runs.items():
        mid = [((b["lo"] + 1) * b["hi"]) ** 0.5 for b in bins]  # geometric middle of 1-based ranks
        text = [f"ranks {b['lo']}-{b['hi'] - 1}, {b['n_words']} words/role, {100 * b['mass']:.1f} % of slots"
                for b in bins]
        fig.add_trace(go.Scatter(x=mid, y=[b["context"] for b in bins], name=name, mode="lines+markers",
                                 text=text, hovertemplate="%{text}<br>in context: %{y:.2f}<extra>%{fullData.name}</extra>"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey")
    fig.update_xaxes(type="log", title_text="frequency rank within its role (1 = most frequent)")
    fig.update_yaxes(range=[0, 1.05], title_text="answered from the context")
    fig.update_layout(title=title, height=380, width=640)
    return fig


def query_attention(att: dict[str, dict], title: str) -> go.Figure:
    """Heatmaps (layer x head) of the query's attention to its earlier occurrence (top row) and to the copula (bottom
    row), one column per eval set (`toy_models.pos_strategy.query_attention`)."""
    kinds = list(att)
    fig = make_subplots(rows=2, cols=len(kinds), shared_yaxes=True, vertical_spacing=0.12,
                        subplot_titles=[f"{k} (acc {att[k]['accuracy']:.2f})" for k in kinds] + [""] * len(kinds))
    for row, key in enumerate(("match", "copula"), start=1):
        for col, k in enumerate(kinds, start=1):
            z = att[k][key]
            fig.add_trace(go.Heatmap(z=z, x=[f"H{h}" for h in range(len(z[0]))], y=[f"L{i}" for i in range(len(z))],
                                     zmin=0, zmax=1, colorscale="Blues", showscale=row == 1 and col == len(kinds),
                                     text=[[f"{v:.2f}" for v in r] for r in z], texttemplate="%{text}",
                                     hovertemplate=f"{k}, {key}: " + "%{y} %{x} %{z:.2f}<extra></extra>"), row, col)
        fig.update_yaxes(title_text="to the occurrence" if key == "match" else "to the copula", row=row, col=1)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=420, width=max(480, 230 * len(kinds)))
    return fig
