"""Figures for circuit studies: patching maps, method agreement, the circuit graph, ablation curves.

All take plain numbers (a `circuits.study.StudyResult` as written to result.json),
so the report, the explorer and the notebooks draw the same pictures.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from apps.figures.common import curves, layer_head_heatmap


def resid_map(values, tokens: Sequence[str], title: str) -> go.Figure:
    """A [layer, pos] patching map with the prompt's tokens on the x axis."""
    z = np.asarray(values, dtype=float)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)][: z.shape[1]]
    labels += [str(i) for i in range(len(labels), z.shape[1])]
    lim = float(np.nanmax(np.abs(z))) or 1.0
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=list(range(z.shape[0])), colorscale="RdBu", zmid=0, zmin=-lim, zmax=lim,
                               colorbar={"title": "metric"},
                               hovertemplate="layer %{y}<br>token %{x}<br>metric %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="position (token)", yaxis_title="layer", yaxis_autorange="reversed",
                      height=max(300, 22 * z.shape[0] + 160), margin={"t": 50})
    return fig


def head_map(values, title: str) -> go.Figure:
    """A [layer, head] patching map, diverging around 0."""
    return layer_head_heatmap(values, title, colorscale="RdBu", zmid=0.0, zlabel="metric")


def layer_bars(values, title: str) -> go.Figure:
    """One patching score per layer (e.g. MLP outputs) as bars."""
    v = np.asarray(values, dtype=float).ravel()
    fig = go.Figure(go.Bar(x=list(range(v.size)), y=v, marker_color=["#2166ac" if x >= 0 else "#b2182b" for x in v],
                           hovertemplate="layer %{x}<br>metric %{y:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="metric", height=320, margin={"t": 50})
    return fig


def agreement_scatter(exact, approx, title: str, labels: Sequence[str] | None = None) -> go.Figure:
    """Attribution estimate against exact activation patching, one dot per component, with y = x."""
    x, y = np.asarray(exact, float).ravel(), np.asarray(approx, float).ravel()
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    fig = go.Figure([
        go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"dash": "dot", "color": "#999"}, name="y = x"),
        go.Scatter(x=x, y=y, mode="markers", name="component", text=list(labels) if labels is not None else None,
                   hovertemplate="%{text}<br>activation %{x:.3f}<br>attribution %{y:.3f}<extra></extra>"),
    ])
    fig.update_layout(title=title, xaxis_title="activation patching (exact)", yaxis_title="attribution patching (linear)",
                      height=420, width=520, margin={"t": 50})
    return fig


def _node_xy(name: str, n_layers: int, n_heads: int) -> tuple[float, float]:
    m = re.match(r"L(\d+)H(\d+)$", name)
    if m:
        return float(m.group(2)), float(m.group(1))
    m = re.match(r"([AM])(\d+)$", name)
    if m:
        return (n_heads + (0.0 if m.group(1) == "A" else 1.0)), float(m.group(2)) + (0.5 if m.group(1) == "M" else 0.0)
    return (n_heads - 1) / 2, (-1.0 if name == "embed" else float(n_layers))


def circuit_graph(heads: Sequence[str], edges: Sequence[Sequence], n_layers: int, n_heads: int, title: str,
                  max_edges: int = 25) -> go.Figure:
    """The found circuit: its heads placed by (head, layer), logits at the bottom, and the strongest EAP edges.

    An edge whose end is a whole attention layer ('A3') is drawn to every circuit head
    of that layer (EAP reads node inputs per layer).
    """
    nodes = list(heads) + ["logits"]
    layer_of = {h: int(re.match(r"L(\d+)", h).group(1)) for h in heads}
    segs = []
    for u, v, s in sorted(edges, key=lambda e: -abs(e[2])):
        srcs = [u] if u in layer_of or u == "embed" else [h for h in heads if f"A{layer_of[h]}" == u]
        dsts = ["logits"] if v == "logits" else [h for h in heads if f"A{layer_of[h]}" == v]
        for a in srcs:
            for b in dsts:
                if (a in layer_of or a == "embed") and a != b:
                    segs.append((a, b, float(s)))
        if len(segs) >= max_edges:
            break
    fig = go.Figure()
    smax = max([abs(s) for *_, s in segs] + [1e-9])
    for a, b, s in segs:
        (x0, y0), (x1, y1) = _node_xy(a, n_layers, n_heads), _node_xy(b, n_layers, n_heads)
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="text", text=f"{a} -> {b}: {s:.3f}",
                                 line={"width": 1 + 6 * abs(s) / smax, "color": "#d62728" if s > 0 else "#1f77b4"},
                                 opacity=0.6, showlegend=False))
    if any(a == "embed" for a, *_ in segs):
        nodes.append("embed")
    grid = [(h, l) for l in range(n_layers) for h in range(n_heads)]  # every head, faint, for orientation
    fig.add_trace(go.Scatter(x=[g[0] for g in grid], y=[g[1] for g in grid], mode="markers", hoverinfo="skip",
                             marker={"size": 7, "color": "#ddd"}, showlegend=False))
    xy = [_node_xy(n, n_layers, n_heads) for n in nodes]
    fig.add_trace(go.Scatter(x=[p[0] for p in xy], y=[p[1] for p in xy], mode="markers+text", text=nodes,
                             textposition="top center", marker={"size": 16, "color": "#2ca02c"}, showlegend=False))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer", height=max(360, 26 * n_layers + 160),
                      margin={"t": 50}, xaxis={"range": [-0.7, n_heads + 0.7], "dtick": 1},
                      yaxis={"range": [n_layers + 0.7, -1.7], "dtick": 1})
    return fig


def ablation_curves(result: dict) -> go.Figure:
    """Normalised metric while ablating heads in order of importance (both directions)."""
    c = result["curves"]
    series = {k: v for k, v in c.items() if k not in ("k", "order")}
    return curves(c["k"], series, f"Ablation curves ({result['config']['ablation']} ablation of heads)",
                  xlabel="heads ablated", ylabel="normalised metric (clean = 1)")
