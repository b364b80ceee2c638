"""Figures for the induction / n-gram head scan (`probes.induction.InductionResult`)."""

from __future__ import annotations

import plotly.graph_objects as go

from apps.figures.common import attention_pattern, curves, layer_head_heatmap
from apps.report import Section

SCORE_TITLES = {
    "induction": "Induction score (second copy -> token after the first copy)",
    "previous_token": "Previous-token score",
    "duplicate_token": "Duplicate-token score (second copy -> its first copy)",
    "dla": "Direct logit attribution to the correct next token (second copy, logits)",
}


def score_title(name: str) -> str:
    if name.startswith("ngram_"):
        return f"{name[6:]}-gram head score (mass on the n-gram match, where it differs from the 1-token match)"
    return SCORE_TITLES.get(name, name)


def score_heatmap(res, name: str) -> go.Figure:
    colors = ("RdBu", 0.0) if name == "dla" else ("Blues", None)
    return layer_head_heatmap(res.scores[name].mean, score_title(name), colorscale=colors[0], zmid=colors[1],
                              zlabel="logit" if name == "dla" else "score")


def loss_curve(res) -> go.Figure:
    x = list(range(1, len(res.loss_by_position) + 1))
    fig = curves(x, {"loss": res.loss_by_position}, "Loss by position on repeated random tokens",
                 xlabel="position of the predicted token", ylabel="loss (nats)", bands={"loss": res.loss_by_position_std})
    # x is the index of the predicted token; with a BOS the second copy starts at seq_len + 1.
    half = res.config.seq_len + (1 if len(res.loss_by_position) >= 2 * res.config.seq_len else 0)
    fig.add_vline(x=half, line_dash="dash", annotation_text="second copy starts")
    return fig


def natural_text_section(nt) -> Section:
    x = list(range(1, len(nt.loss_by_position) + 1))
    fig = curves(x, {"loss": nt.loss_by_position}, f"Loss by position on natural text ({nt.n_contexts} contexts)",
                 xlabel="position of the predicted token", ylabel="loss (nats)")
    for pos in (nt.early, nt.late):
        fig.add_vrect(x0=pos + 1, x1=pos + nt.window + 1, opacity=0.15, line_width=0)
    return Section("ICL score on natural text", f"Olsson et al.'s score on {nt.source}: loss around token {nt.late} "
                   f"({nt.late_loss:.3f}) minus around token {nt.early} ({nt.early_loss:.3f}) = {nt.icl_score:.3f} nats.",
                   [fig])


def example_patterns(res) -> list[go.Figure]:
    figs = []
    for key, pattern in res.example_patterns.items():
        layer, head = key.split(".")
        figs.append(attention_pattern(pattern, res.example_tokens, f"L{layer}.H{head} on one repeated prompt"))
    return figs


def report_sections(res) -> list[Section]:
    """All sections of the induction report, in reading order."""
    top = ", ".join(f"L{L}.H{H} ({s:.2f})" for L, H, s in res.top("induction", 5))
    ngram = [k for k in res.scores if k.startswith("ngram_")]
    extra = [natural_text_section(res.natural_text)] if res.natural_text else []
    return [
        Section("Induction heads", f"Top heads: {top}. Attention from each second-copy token to the token that "
                "followed its first copy, averaged over prompts (Olsson et al. 2022).",
                [score_heatmap(res, "induction"), score_heatmap(res, "previous_token"), score_heatmap(res, "duplicate_token")]),
        Section("In-context learning score", f"Loss on the first copy {res.first_half_loss:.3f} nats, on the second "
                f"copy {res.second_half_loss:.3f} nats: ICL score {res.icl_score:.3f} (late minus early).",
                [loss_curve(res)]),
        Section("Direct logit attribution", "Each head's output carried straight to the correct next-token logit "
                "on the second copy, with every norm frozen (positive: the head pushes the right answer).",
                [score_heatmap(res, "dla")]),
        Section("N-gram heads", "Akyürek et al. 2024: attention to positions whose n-1 preceding tokens match the "
                "current n-1 tokens, on small-alphabet sequences, scored only where that differs from the plain "
                "1-token match.", [score_heatmap(res, k) for k in ngram]),
        Section("Attention patterns of the top heads", "One repeated prompt; the induction stripe sits one "
                "position right of the seq_len-offset diagonal.", example_patterns(res)),
    ] + extra
