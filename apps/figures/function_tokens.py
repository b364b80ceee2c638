"""Figures for the function-token analysis; every function takes the JSON form of the result (result.json)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import plotly.graph_objects as go

from apps.figures.common import curves
from apps.report import Section

_COLORS = {"function": "#d62728", "content": "#1f77b4", "all": "#444"}


def degree_rank_figure(graph: dict[str, Any], texts: list[str] | None = None) -> go.Figure:
    """Token degree (features it activates) vs frequency rank, log-log, with the power-law fit."""
    deg = np.asarray(graph["degree"], dtype=float)
    freq = np.asarray(graph["frequency"], dtype=float)
    is_fn = np.asarray(graph["is_function"], dtype=bool)
    rank = np.arange(1, len(deg) + 1)
    fig = go.Figure()
    for name, mask in (("function", is_fn), ("content", ~is_fn)):
        keep = mask & (deg > 0)
        hover = [f"{texts[i]!r}" if texts else str(graph["token_ids"][i]) for i in np.flatnonzero(keep)]
        fig.add_trace(go.Scattergl(x=rank[keep], y=deg[keep], mode="markers", name=f"{name} tokens",
                                   marker={"size": 5, "color": _COLORS[name], "opacity": 0.6}, text=hover,
                                   customdata=freq[keep],
                                   hovertemplate="%{text}<br>rank %{x}, count %{customdata}<br>degree %{y}<extra></extra>"))
    fit = graph["power_law"]
    if fit.get("alpha") is not None and len(rank):
        fig.add_trace(go.Scatter(x=[1, rank[-1]], y=[10 ** fit["log10_C"], 10 ** fit["log10_C"] * rank[-1] ** -fit["alpha"]],
                                 mode="lines", name=f"fit: degree ~ rank^-{fit['alpha']:.2f} (R² {fit['r2']:.2f})",
                                 line={"color": "black", "dash": "dash"}))
    fig.update_layout(title="Token degree in the token-feature graph vs frequency rank", xaxis_title="frequency rank",
                      yaxis_title="features activated (degree)", xaxis_type="log", yaxis_type="log", height=420,
                      margin={"t": 50})
    return fig


def coverage_figure(graph: dict[str, Any]) -> go.Figure:
    """Cumulative fraction of alive features activated by the top-k most frequent tokens."""
    cov = graph["coverage"]
    ks = [int(k) for k in cov["all"]]
    series = {f"top-k {name} tokens": [cov[name][str(k)] if str(k) in cov[name] else cov[name][k] for k in ks]
              for name in ("all", "function", "content")}
    fig = curves(ks, series, "Alive features activated by the k most frequent tokens", xlabel="k",
                 ylabel="fraction of alive features")
    fig.update_traces(mode="lines+markers")
    fig.update_yaxes(range=[0, 1.02])
    return fig


def sae_training_figure(log: dict[str, Any]) -> go.Figure:
    """FVE and dead fraction (left) over training tokens."""
    return curves(log["tokens"], {"FVE (batch)": log["fve"], "dead fraction": log["dead_fraction"]},
                  "SAE training", xlabel="training tokens", ylabel="fraction")


def transition_figure(trans: dict[str, Any]) -> go.Figure:
    """Share of predictions vs share of total loss for each (read -> predicted) token-type transition."""
    names = list(trans["count"])
    fig = go.Figure([
        go.Bar(x=names, y=[trans["token_share"][n] for n in names], name="share of predictions"),
        go.Bar(x=names, y=[trans["loss_share"][n] for n in names], name="share of total loss",
               text=[f"mean loss {trans['mean_loss'][n]:.2f}" if trans["mean_loss"][n] is not None else "" for n in names],
               textposition="outside"),
    ])
    fig.update_layout(barmode="group", title="Loss by token transition (type read -> type predicted)",
                      yaxis_title="share", height=380, margin={"t": 50})
    return fig


def retrieval_figure(ret: dict[str, Any]) -> go.Figure:
    """Ablating the top features at function vs content positions: next-token log-prob change, KL, top-1 flips."""
    groups = ret["groups"]
    metrics = [("ablation_delta_logprob", "Δ log p(next)"), ("ablation_kl", "KL(clean || ablated)"),
               ("ablation_top1_changed", "top-1 changed"), ("attribution_top_m", "attribution of top features")]
    fig = go.Figure([go.Bar(x=[m[1] for m in metrics], y=[groups[g][m[0]] for m in metrics], name=f"{g} positions",
                            marker_color=_COLORS[g]) for g in groups])
    fig.update_layout(barmode="group", title=f"Ablating the top {ret['top_m']} SAE features at one position",
                      height=380, margin={"t": 50})
    return fig


def toy_transition_figure(toy: dict[str, Any]) -> go.Figure:
    """Toy LM trained from scratch: held-out mean loss per transition over training steps."""
    fig = curves(toy["step"], {t: toy["mean_loss"][t] for t in toy["mean_loss"]},
                 "Toy LM from scratch: held-out loss by transition over training", xlabel="training step",
                 ylabel="mean next-token loss")
    fig.update_traces(mode="lines+markers")
    return fig


def toy_share_figure(toy: dict[str, Any]) -> go.Figure:
    """Toy LM: share of the held-out total loss each transition carries, over training."""
    return curves(toy["step"], {t: toy["loss_share"][t] for t in toy["loss_share"]},
                  "Toy LM: share of total loss by transition over training", xlabel="training step", ylabel="share of loss")


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td style='padding:2px 8px'>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table style='border-collapse:collapse;font-size:.85rem'><tr>{head}</tr>{body}</table>"


def top_tokens_table(result: dict[str, Any], n: int = 20) -> str:
    g = result["graph"]
    texts = result.get("top_token_texts", [])
    rows = [[i + 1, repr(texts[i]) if i < len(texts) else g["token_ids"][i], g["frequency"][i], g["degree"][i],
             "function" if g["is_function"][i] else "content"] for i in range(min(n, len(g["degree"])))]
    return _table(rows, ["rank", "token", "count", "degree", "type"])


def report_sections(result: dict[str, Any]) -> list[Section]:
    """The report body: SAE quality, graph statistics, retrieval, transitions."""
    sae, g = result["sae"], result["graph"]
    sections = [
        Section("Sparse autoencoder", (
            f"{sae['config']['kind']} SAE, {sae['stats']['n_latents']} latents on blocks.{result['layer']}.hook_resid_pre. "
            f"FVE {sae['stats']['fve']:.3f}, L0 {sae['stats']['l0']:.1f}, alive {sae['stats']['n_alive']}, "
            f"dead {sae['stats']['n_dead']}. Model loss {sae['loss']['clean']:.3f} without, {sae['loss']['spliced']:.3f} "
            f"with the SAE spliced in."), [sae_training_figure(sae["log"])]),
        Section("Token-feature bipartite graph", (
            f"Edge (token, feature) when the feature's activation exceeds {g['threshold']} on any occurrence. "
            f"{g['n_token_types']} token types, {g['n_alive']} alive features. The top-10 tokens activate "
            f"{_pct(g['coverage']['all'], 10)} of alive features; the top-10 function tokens {_pct(g['coverage']['function'], 10)}, "
            f"the top-10 content tokens {_pct(g['coverage']['content'], 10)}."),
            [degree_rank_figure(g, result.get("token_texts")), coverage_figure(g), top_tokens_table(result)]),
    ]
    if result.get("retrieval"):
        ret = result["retrieval"]
        feats = [[f["feature"], f["count"], f.get("n_tokens_linked", ""), " | ".join(f.get("fires_on", [])),
                  " | ".join(repr(t) for t in f["promotes"])] for f in ret["top_features"]]
        ex = [[e["context"], e["token"], e["next"], e["top_features"], f"{e['delta_logprob']:+.2f}"] for e in ret["examples"]]
        sections.append(Section("Memory retrieval at function tokens", (
            "At sampled function and content positions (paired: same sequences), the top features by activation are "
            "ablated at that one position; bars compare the effect on the next-token prediction."),
            [retrieval_figure(ret), _table(feats, ["feature", "times in top at function tokens", "token types it fires on",
                                  "fires most often on (rate per occurrence, tokens seen >= 3x)", "promotes (logit lens)"]),
             _table(ex, ["context", "function token", "next", "top features", "Δ log p after ablation"])]))
    if result.get("transitions"):
        t = result["transitions"]
        sections.append(Section("Loss by token transition", (
            f"Per-token loss on {sum(t['count'].values())} predictions; function->content carries "
            f"{t['loss_share']['function->content']:.1%} of the total loss on {t['token_share']['function->content']:.1%} "
            "of predictions."), [transition_figure(t)]))
    if result.get("toy_lm"):
        toy = result["toy_lm"]
        sections.append(Section("Consolidation in a toy LM trained from scratch", (
            f"A 2-layer toy transformer (d_model 64, the corpus's own {toy['vocab']}-token vocabulary, windows of "
            f"{toy['seq_len']} tokens) trained for {toy['steps']} steps on the same corpus; loss by transition on "
            "held-out windows, logged over training."), [toy_transition_figure(toy), toy_share_figure(toy)]))
    return sections


def _pct(cov: dict, k: int) -> str:
    v = cov.get(str(k), cov.get(k))
    return "n/a" if v is None else f"{v:.1%}"
