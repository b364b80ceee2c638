"""Figures for toy-model experiments: training curves, error vs k, shift sweeps, LSA matrix, mechanism probes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from apps.figures.common import curves


def _smooth(y: Sequence[float], window: int) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if window <= 1 or len(y) < window:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = (c[window:] - c[:-window]) / window
    return np.concatenate([y[: window - 1] * np.nan, out])


def training_curve(losses: Sequence[float], evals: Sequence[dict[str, Any]] = (), title: str = "Training loss") -> go.Figure:
    """Per-step loss (raw and smoothed) plus any periodic evaluation metrics, log y."""
    steps = np.arange(1, len(losses) + 1)
    window = max(1, len(losses) // 100)
    stride = max(1, len(losses) // 2000)  # at most ~2000 points per trace keeps the report small
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=steps[::stride], y=np.asarray(losses, dtype=float)[::stride], mode="lines", name="loss",
                             opacity=0.3, line={"width": 1}))
    fig.add_trace(go.Scatter(x=steps[::stride], y=_smooth(losses, window)[::stride], mode="lines",
                             name=f"loss (mean of {window})"))
    for key in sorted({k for e in evals for k in e if k != "step"}):
        fig.add_trace(go.Scatter(x=[e["step"] for e in evals], y=[e.get(key) for e in evals], mode="lines+markers",
                                 name=f"eval {key}"))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="squared error", height=380, margin={"t": 50})
    fig.update_yaxes(type="log")
    return fig


def error_vs_k(curve: dict[str, Sequence[float]], title: str, d: int | None = None) -> go.Figure:
    """Normalised squared error against the number of in-context examples, model and baselines on one axis."""
    n = len(next(iter(curve.values())))
    fig = curves(list(range(n)), {name: v for name, v in curve.items()}, title, xlabel="in-context examples k",
                 ylabel="squared error / d")
    if d is not None:
        fig.add_vline(x=d, line_dash="dot", line_color="gray", annotation_text="k = d")
    fig.update_yaxes(range=[-0.05, 1.6])
    return fig


def shift_sweep(sweep: dict[str, dict[str, dict[str, dict[str, float]]]], title: str = "Distribution shifts") -> go.Figure:
    """One panel per shift: error relative to predicting 0 (1 = useless) against the scale c, log-log."""
    shifts = list(sweep)
    fig = make_subplots(rows=1, cols=len(shifts), subplot_titles=[f"{s} shift" for s in shifts], shared_yaxes=True)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#7f7f7f"]
    names: list[str] = []
    for s in shifts:
        for row in sweep[s].values():
            names += [n for n in row if n not in names]
    for col, s in enumerate(shifts, start=1):
        scales = [float(c) for c in sweep[s]]
        for i, name in enumerate(names):
            ys = [sweep[s][c].get(name, {}).get("rel") for c in sweep[s]]
            fig.add_trace(go.Scatter(x=scales, y=[max(y, 1e-6) if y is not None else None for y in ys],
                                     mode="lines+markers", name=name, legendgroup=name, showlegend=col == 1,
                                     line={"color": colors[i % len(colors)], "dash": "dot" if name == "zero" else None}),
                          row=1, col=col)
        fig.update_xaxes(type="log", title_text="scale c", row=1, col=col)
        fig.update_yaxes(type="log", row=1, col=col)  # every panel: matched axes do not inherit the type
    fig.update_yaxes(title_text="error / error of predicting 0 (floored at 1e-6)", row=1, col=1)
    fig.update_layout(title=title, height=400, margin={"t": 70})
    return fig


def matrix_heatmap(matrix: Sequence[Sequence[float]], title: str) -> go.Figure:
    z = np.asarray(matrix, dtype=float)
    fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu", zmid=0, hovertemplate="row %{y}, col %{x}: %{z:.4f}<extra></extra>"))
    fig.update_layout(title=title, yaxis_autorange="reversed", height=360, width=420, margin={"t": 50})
    return fig


def query_attention(query_attention: Sequence[Sequence[Sequence[float]]], title: str) -> go.Figure:
    """[layer head key] attention from the query x token as a (layer.head) x key-position heatmap; keys labelled x_i / y_i."""
    z = np.asarray(query_attention, dtype=float)
    n_layers, n_heads, n_keys = z.shape
    labels = [f"{'x' if j % 2 == 0 else 'y'}{j // 2}" for j in range(n_keys)]
    labels[-1] = "x_q"
    rows = [f"L{L}.H{h}" for L in range(n_layers) for h in range(n_heads)]
    fig = go.Figure(go.Heatmap(z=z.reshape(-1, n_keys), x=labels, y=rows, colorscale="Blues", zmin=0,
                               hovertemplate="%{y} -> %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="key token", yaxis_title="layer.head", yaxis_autorange="reversed",
                      height=max(300, 18 * len(rows) + 120), margin={"t": 50})
    return fig


def attribution_bars(series: dict[str, Sequence[float]], title: str) -> go.Figure:
    """Per in-context example attributions (each series scaled to max 1 so their shapes compare)."""
    fig = go.Figure()
    for name, v in series.items():
        v = np.asarray(v, dtype=float)
        m = np.nanmax(np.abs(v)) if len(v) else 1.0
        fig.add_trace(go.Bar(x=[f"ex {i}" for i in range(len(v))], y=v / (m or 1.0), name=name))
    fig.update_layout(title=title, barmode="group", yaxis_title="relative effect (max = 1)", height=360, margin={"t": 50})
    return fig
