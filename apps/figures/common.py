"""Generic figure shapes used by every capability: heatmaps, curves, attention patterns."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go


def layer_head_heatmap(values, title: str, *, colorscale: str = "Blues", zmid: float | None = None,
                       zlabel: str = "score") -> go.Figure:
    """A [layer, head] array as a heatmap, layer 0 at the top, hover shows L.H and value."""
    z = np.asarray(values, dtype=float)
    n_layers, n_heads = z.shape
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(n_heads)), y=list(range(n_layers)), colorscale=colorscale, zmid=zmid,
        colorbar={"title": zlabel}, hovertemplate="layer %{y}, head %{x}<br>" + zlabel + " %{z:.3f}<extra></extra>",
    ))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer", yaxis_autorange="reversed",
                      height=max(260, 22 * n_layers + 120), width=max(560, 40 * n_heads + 220), margin={"t": 50})
    return fig


def curves(x: Sequence[float], series: dict[str, Sequence[float]], title: str, *, xlabel: str, ylabel: str,
           bands: dict[str, Sequence[float]] | None = None, log_y: bool = False) -> go.Figure:
    """Several named curves on one axis; optional +-band per series (e.g. a std over prompts)."""
    fig = go.Figure()
    for name, y in series.items():
        y = np.asarray(y, dtype=float)
        if bands and name in bands:
            b = np.asarray(bands[name], dtype=float)
            fig.add_trace(go.Scatter(x=list(x) + list(x)[::-1], y=list(y + b) + list((y - b)[::-1]), fill="toself",
                                     line={"width": 0}, opacity=0.2, showlegend=False, hoverinfo="skip", name=name))
        fig.add_trace(go.Scatter(x=list(x), y=y, mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title=ylabel, height=380, margin={"t": 50})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def attention_pattern(pattern, tokens: Sequence[str], title: str) -> go.Figure:
    """A [query, key] attention pattern with token labels; hover shows both tokens and the weight."""
    p = np.asarray(pattern, dtype=float)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure(go.Heatmap(
        z=p, x=labels, y=labels, colorscale="Blues", zmin=0, zmax=1,
        hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>",
    ))
    side = min(900, max(320, 9 * len(tokens) + 160))
    fig.update_layout(title=title, xaxis_title="key (attended to)", yaxis_title="query", yaxis_autorange="reversed",
                      height=side, width=side + 80, margin={"t": 50}, xaxis_showticklabels=len(tokens) <= 64,
                      yaxis_showticklabels=len(tokens) <= 64)
    return fig
