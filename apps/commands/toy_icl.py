"""`iclens train icl-classification`, `iclens train pos-forgetting`, `iclens report forgetting`, `iclens sweep`.

icl-classification: Reddy 2023's bursty classification with the minimal two-layer attention-only
network (transition detection, progress measures, head ablation, nested-logit fit).
pos-forgetting: Anand et al. 2024's synthetic part-of-speech task under a forgetting schedule.
report forgetting: several pos-forgetting runs (e.g. the three schedules) on shared axes.
sweep: the ICL / IWL phase diagram over K, B, eps, alpha (resumable).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import torch
import typer

from apps.cli_base import DEVICE_OPT, SEED_OPT, app, prepare_out, report_app, train_app
from apps.figures import icl_iwl as fig
from apps.report import Section, json_block, write_report
from probes.errors import IclensError
from probes.models import resolve_device
from probes.results import versions, write_json
from toy_models.forgetting import (SCHEDULES, ForgettingConfig, POSRunConfig, average_evals, average_kinds,
                                   forgetting_summary, make_schedule, recorded_curves, run_pos_forgetting)
from toy_models.icl_iwl_experiment import ICLRunConfig, run_training, summarize
from toy_models.pos_strategy import context_use_by_rank, query_attention
from toy_models.sweep import phase_table, run_sweep
from toy_models.train import check_run_dir

SCHEDULE_OPT = typer.Option("none", "--schedule", help="Forgetting schedule: none, active or temporary.")
K_OPT = typer.Option(250, "--forget-every", help="Re-initialise the token embeddings every k steps.")
UNTIL_OPT = typer.Option(0, "--forget-until", help="Temporary forgetting: stop resetting at step T.")
RESET_OPT = typer.Option(False, "--reset-optimizer", help="Also clear the optimiser state of the reset parameters.")


def _threads(dev: torch.device) -> None:
    if dev.type == "cpu":
        torch.set_num_threads(min(torch.get_num_threads(), 2))


def build_icl_report(out: Path, result: dict) -> Path:
    """report.html of an icl-classification run from its result dict."""
    cfg, curve, steps = result["config"], result["curves"], result["steps"]
    t = result["transitions"].get("icl_acc")
    when = (f"The ICL accuracy leaves its plateau ({t['plateau']:.2f}) at step {t['step']:.0f} (10-90 % rise from "
            f"{t['start']:.0f} to {t['end']:.0f}; {'abrupt' if t['abrupt'] else 'gradual'}), reaching {t['final']:.2f}."
            if t else "No ICL transition was detected in this run (ICL accuracy never rose by 0.2).")
    for k, name in (("prev_token_score", "previous-token score"), ("induction_score", "induction score")):
        tk = result["transitions"].get(k)
        when += f" The {name} rises at step {tk['step']:.0f}." if tk else f" The {name} shows no transition."
    sections = [
        Section("Training loss", "Cross-entropy of the query label on fresh training sequences.",
                [fig.curves(list(range(1, len(result["losses"]) + 1)), {"loss": result["losses"]}, "training loss",
                            xlabel="step", ylabel="loss")]),
        Section("Abrupt in-context learning and the induction circuit", when,
                [fig.transition_curves(steps, curve, t)]),
        Section("Head ablation", "Zero-ablating the layer-2 head's output (hook_z) after training: if it is the "
                "induction head, ICL accuracy falls to chance while IWL accuracy stays.",
                [fig.ablation_bars(result["ablation"])]),
    ]
    for name, f in result["nested_logit_fit"].items():
        sections.append(Section(
            f"Nested-logit model ({name.replace('_', ' ')})",
            f"Three logits (previous-token, induction, read-out) learned by gradient flow from s0 = {f['s0']:.2f} "
            f"at rate eta = {f['eta']:.3g}, fitted to the measured ICL loss (rmse {f['rmse']:.3f}). Predicted "
            f"transition step: {f['predicted_transition']}; measured: {f['measured_transition']}.",
            [fig.nested_logit_fit(f, curve["icl_loss"], f"nested-logit fit ({name})")]))
    sections.append(Section("Config", "", [json_block(cfg)]))
    fin = result["final"]
    facts = {"steps": result["steps_done"], "steps/s": round(result["steps_per_s"], 2),
             "final ICL accuracy": round(fin.get("icl_acc", float("nan")), 3),
             "final IWL accuracy": round(fin.get("iwl_acc", float("nan")), 3),
             "ICL transition step": t["step"] if t else "none",
             "ICL after layer-2 ablation": round(result["ablation"]["layer2_ablated"]["icl"], 3)}
    return write_report(out / "report.html", "In-context vs in-weights classification (Reddy 2023)", sections, facts)


ICL = ICLRunConfig()  # the CPU preset: the options' defaults


@train_app.command("icl-classification")
def train_icl_classification(
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, result.json, report.html."),
    n_classes: int = typer.Option(ICL.n_classes, "--K", help="Number of classes K (ICL is favoured by large K)."),
    burstiness: int = typer.Option(ICL.burstiness, "--B",
                                   help="Burstiness B: each context class appears B times (0: none)."),
    eps: float = typer.Option(ICL.eps, "--eps", help="Within-class noise epsilon."),
    zipf_alpha: float = typer.Option(ICL.zipf_alpha, "--alpha", help="Zipf exponent of class frequencies."),
    p_bursty: float = typer.Option(ICL.p_bursty, "--p-bursty", help="Fraction of bursty training sequences."),
    p_novel: float = typer.Option(ICL.p_novel, "--p-novel", help="Fraction of training sequences with novel classes."),
    n_labels: int = typer.Option(ICL.n_labels, "--L", help="Number of labels L."),
    steps: int = typer.Option(ICL.steps, "--steps", help="Optimiser steps."),
    batch_size: int = typer.Option(ICL.batch_size, "--batch-size"),
    lr: float = typer.Option(ICL.lr, "--lr", help="Learning rate."),
    optimizer: str = typer.Option(ICL.optimizer, "--optimizer", help="adamw (the preset) or sgd (the paper's)."),
    momentum: float = typer.Option(ICL.momentum, "--momentum", help="SGD momentum."),
    d_model: int = typer.Option(ICL.d_model, "--d-model", help="0: the tokens enter the residual stream as they are "
                                "(identity read-in, Reddy); > 0: a random linear read-in to this width."),
    init_std: float = typer.Option(ICL.init_std, "--init-std", help="Initial weight scale of the network."),
    eval_every: int = typer.Option(0, "--eval-every", help="0: steps / 50."),
    eval_size: int = typer.Option(512, "--eval-size", help="Sequences per eval set."),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every"),
    schedule: str = SCHEDULE_OPT, forget_every: int = K_OPT, forget_until: int = UNTIL_OPT,
    reset_optimizer: bool = RESET_OPT,
    resume: bool = typer.Option(False, "--resume", help="Continue the killed run in --out (same options)."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Train the minimal network on bursty in-context classification; result.json + report.html in --out."""
    cfg = ICLRunConfig(n_classes=n_classes, burstiness=burstiness, eps=eps, zipf_alpha=zipf_alpha, p_bursty=p_bursty,
                       p_novel=p_novel, n_labels=n_labels, steps=steps, batch_size=batch_size, lr=lr,
                       optimizer=optimizer, momentum=momentum, d_model=d_model, init_std=init_std, eval_every=eval_every,
                       eval_size=eval_size, checkpoint_every=checkpoint_every, seed=seed)
    fcfg = ForgettingConfig(schedule=schedule, k=forget_every, until=forget_until,
                            reset_optimizer_state=reset_optimizer, seed=seed)
    run_config = {"experiment": "icl-classification", "run": cfg.to_dict(),
                  "schedule": fcfg.to_dict() if schedule != "none" else None}
    check_run_dir(out, run_config, resume=resume)
    out = prepare_out(out)
    dev = resolve_device(device)
    _threads(dev)
    from toy_models.classifier import minimal_classifier

    sched = None
    if schedule != "none":
        sched = make_schedule(fcfg, minimal_classifier(cfg.task_config(), cfg.classifier_config()))
    model, task, res = run_training(cfg, out, resume=resume, device=str(dev), schedule=sched,
                                    schedule_config=run_config["schedule"])
    result = summarize(model, task, cfg, res)
    result["schedule"] = run_config["schedule"]
    result["versions"] = versions()
    write_json(out / "result.json", result)
    build_icl_report(out, result)
    t = result["transitions"].get("icl_acc")
    typer.echo(f"final ICL {result['final']['icl_acc']:.3f}, IWL {result['final']['iwl_acc']:.3f}, transition "
               f"{t['step'] if t else 'none'}; wrote {out / 'result.json'} and {out / 'report.html'}")


def build_forgetting_report(out: Path, runs: dict[str, dict], title: str) -> Path:
    """report.html comparing pos-forgetting runs ({name: result dict})."""
    kinds = recorded_curves(*(r["evals"] for r in runs.values()))
    sections = [Section("Accuracy over training",
                        "Each panel is one eval set: in-distribution, rare (tail) words, frequent words in the opposite "
                        "role (only in-context answers are right), rare words in the opposite role, and held-out words "
                        "with fresh embeddings (structural ICL only), drawn at the initialisation scale as never-trained "
                        "rows are (heldout) and like the trained words (heldout_like; the gap is the embeddings' "
                        "drift), and trained ambiguous words as the query (ambiguous: in-context use on words the "
                        "model knows, the paper's conditional ICL, next to the structural ICL of held-out words). "
                        "Anand et al. predict: without forgetting the "
                        "held-out accuracy rises then decays (transience); active forgetting keeps it; temporary "
                        "forgetting gives in-weights answers for frequent words and in-context ones for rare and "
                        "unseen words (dual process). Dotted line: 0.7, what a model scores that ignores where the "
                        "query occurred and answers the majority role given the copula's position; the verdicts judge "
                        "held-out accuracy above it.",
                        [fig.forgetting_curves({n: r["evals"] for n, r in runs.items()}, kinds, title)])]
    rows = "".join(f"<tr><td>{n}</td>" + "".join(
        f"<td>{r['summary'].get(k, {}).get('final', float('nan')):.3f}</td>" for k in kinds) +
        f"<td>{r['summary'].get('transient')}</td><td>{r['summary'].get('persistent')}</td>"
        f"<td>{r['summary'].get('dual_process')}</td></tr>" for n, r in runs.items())
    head = "".join(f"<th>{k}</th>" for k in ("run", *kinds, "transient", "persistent", "dual process"))
    sections.append(Section("Final accuracies and verdicts", "Verdict rules: see toy_models.forgetting.forgetting_summary.",
                            [f"<table class='facts'><tr>{head}</tr>{rows}</table>"]))
    averaged = {n: r["evals"] for n, r in runs.items() if average_evals(r["evals"])}
    if averaged:
        sections.append(Section(
            "Live weights and their moving average",
            "Runs trained with --ema-decay also evaluate an exponential moving average of the weights (dashed), the "
            "centre the live weights (solid) jitter around at a constant learning rate. A fall in the live curve "
            "alone is noise; a fall in both is the trajectory itself.",
            [fig.live_vs_average(averaged, average_kinds(averaged), "Live weights vs their moving average")]))
    by_rank = {n: r["context_by_rank"] for n, r in runs.items() if r.get("context_by_rank")}
    if by_rank:
        sections.append(Section(
            "In-context use by word frequency (end of training)",
            "Unambiguous words of each frequency-rank bin placed in the role opposite to their training role, where "
            "context and weights disagree: 1 = always answered from the context, 0 = always from the weights. The "
            "dual process shows as a rising profile: frequent words low (weights), rare words high (context).",
            [fig.context_by_rank(by_rank, "Answered from the context, by frequency rank")]))
    for n, r in runs.items():
        if r.get("query_attention"):
            sections.append(Section(
                f"Where the query looks: {n} (end of training)",
                "Mean attention from the query (last token) to its own earlier occurrence (top) and to the copula "
                "(bottom), per layer and head, on each eval set; held-out words with fresh embeddings. The in-context "
                "strategy matches the query to its occurrence; a head on the copula alone gives only the position "
                "prior (0.7).", [fig.query_attention(r["query_attention"], f"Where the query looks: {n}")]))
    sections.append(Section("Configs", "", [json_block({n: r["config"] for n, r in runs.items()})]))
    facts = {n: f"held-out final {r['summary'].get('heldout', {}).get('final', float('nan')):.3f}"
             for n, r in runs.items()}
    return write_report(out / "report.html", title, sections, facts)


POS = POSRunConfig()  # the CPU preset: the options' defaults


@train_app.command("pos-forgetting")
def train_pos_forgetting(
    out: Path = typer.Option(..., "--out", help="Run folder: checkpoints, result.json, report.html."),
    schedule: str = SCHEDULE_OPT, forget_every: int = K_OPT, forget_until: int = UNTIL_OPT,
    reset_optimizer: bool = RESET_OPT,
    n_words: int = typer.Option(POS.n_words, "--n-words", help="Training vocabulary (half nouns, half adjectives)."),
    zipf_alpha: float = typer.Option(POS.zipf_alpha, "--alpha", help="Zipf exponent of word frequencies."),
    p_ambiguous: float = typer.Option(POS.p_ambiguous, "--p-ambiguous", help="Fraction of words that take either role."),
    p_absent: float = typer.Option(POS.p_absent, "--p-absent",
                                   help="Fraction of training sequences whose query word is not in the context."),
    n_layers: int = typer.Option(POS.n_layers, "--n-layers"),
    d_model: int = typer.Option(POS.d_model, "--d-model"),
    embed_std: float = typer.Option(POS.embed_std, "--embed-std",
                                    help="Initial (and re-initialisation) scale of the token embeddings."),
    steps: int = typer.Option(POS.steps, "--steps"),
    batch_size: int = typer.Option(POS.batch_size, "--batch-size"),
    lr: float = typer.Option(POS.lr, "--lr"),
    lr_schedule: str = typer.Option(POS.lr_schedule, "--lr-schedule",
                                    help="constant, or cosine (decays to 0 over the run)."),
    ema_decay: float = typer.Option(POS.ema_decay, "--ema-decay",
                                    help="Also evaluate an exponential moving average of the weights with this decay "
                                         "(e.g. 0.999); 0: none."),
    eval_every: int = typer.Option(0, "--eval-every", help="0: steps / 40."),
    checkpoint_every: int = typer.Option(1000, "--checkpoint-every"),
    resume: bool = typer.Option(False, "--resume"),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Train on the synthetic part-of-speech task under a forgetting schedule; result.json + report.html in --out."""
    cfg = POSRunConfig(n_words=n_words, zipf_alpha=zipf_alpha, p_ambiguous=p_ambiguous, p_absent=p_absent,
                       n_layers=n_layers, d_model=d_model, embed_std=embed_std, steps=steps, batch_size=batch_size, lr=lr,
                       lr_schedule=lr_schedule, ema_decay=ema_decay, eval_every=eval_every,
                       checkpoint_every=checkpoint_every, seed=seed)
    fcfg = ForgettingConfig(schedule=schedule, k=forget_every, until=forget_until,
                            reset_optimizer_state=reset_optimizer, seed=seed)
    check_run_dir(out, {"experiment": "pos-forgetting", "run": cfg.to_dict(), "forgetting": fcfg.to_dict()},
                  resume=resume)
    out = prepare_out(out)
    dev = resolve_device(device)
    _threads(dev)
    model, task, res = run_pos_forgetting(cfg, fcfg, out, resume=resume, device=str(dev))
    result = {"config": {"run": cfg.to_dict(), "forgetting": fcfg.to_dict()}, "steps_done": res.steps_done,
              "steps_per_s": res.steps_per_s, "losses": res.losses, "evals": res.evals, "events": res.events,
              "summary": forgetting_summary(res.evals), "context_by_rank": context_use_by_rank(model.eval(), task),
              "query_attention": query_attention(model, task),
              "versions": versions()}
    write_json(out / "result.json", result)
    build_forgetting_report(out, {schedule: result}, f"POS forgetting: {schedule} schedule")
    s = result["summary"]
    typer.echo(f"held-out final {s['heldout']['final']:.3f} (peak {s['heldout']['peak']:.3f}); "
               f"wrote {out / 'result.json'} and {out / 'report.html'}")


@report_app.command("forgetting")
def report_forgetting(
    runs: list[Path] = typer.Option(..., "--run", help="pos-forgetting run folders (repeat: --run A --run B)."),
    out: Path = typer.Option(..., "--out"),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Several pos-forgetting runs (e.g. none / active / temporary) on shared axes."""
    del seed, device  # reads finished results only
    loaded = {}
    for r in runs:
        path = Path(r) / "result.json"
        if not path.exists():
            raise IclensError(f"{path} missing: finish the run with `iclens train pos-forgetting --out {r}` first.")
        res = json.loads(path.read_text())
        name = f"{res['config']['forgetting']['schedule']} ({Path(r).name})"
        loaded[name] = res
    out = prepare_out(out)
    write_json(out / "result.json", {"runs": {n: {"summary": r["summary"], "evals": r["evals"],
                                                  "context_by_rank": r.get("context_by_rank"),
                                                  "query_attention": r.get("query_attention")}
                                              for n, r in loaded.items()}, "versions": versions()})
    build_forgetting_report(out, loaded, "Forgetting schedules on the part-of-speech task")
    typer.echo(f"wrote {out / 'result.json'} and {out / 'report.html'}")


def _floats(text: str, name: str) -> list:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise IclensError(f"{name} takes comma-separated numbers (got {text!r}).") from None
    if not vals:
        raise IclensError(f"{name} needs at least one value.")
    return [int(v) if v.is_integer() and name in ("--K", "--B") else v for v in vals]


@app.command("sweep")
def sweep(
    out: Path = typer.Option(..., "--out", help="Sweep folder; rerun the same command to continue a killed sweep."),
    ks: str = typer.Option("32,256,2048,8192", "--K", help="Comma-separated numbers of classes."),
    bs: str = typer.Option(str(ICL.burstiness), "--B", help="Comma-separated burstiness values."),
    epss: str = typer.Option("0.1,0.75", "--eps", help="Comma-separated within-class noise values."),
    alphas: str = typer.Option("0", "--alpha", help="Comma-separated Zipf exponents."),
    steps: int = typer.Option(3000, "--steps", help="Steps per point (3000: ~2 min a point on one core)."),
    batch_size: int = typer.Option(128, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr"),
    eval_size: int = typer.Option(256, "--eval-size"),
    report_only: bool = typer.Option(False, "--report-only", help="Only draw the finished points (no training)."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """ICL / IWL phase diagram of the classification task over K x B x eps x alpha (resumable)."""
    grid = {"n_classes": _floats(ks, "--K"), "burstiness": _floats(bs, "--B"), "eps": _floats(epss, "--eps"),
            "zipf_alpha": _floats(alphas, "--alpha")}
    base = ICLRunConfig(steps=steps, batch_size=batch_size, lr=lr, eval_size=eval_size, seed=seed,
                        checkpoint_every=max(1, steps // 4))
    from dataclasses import replace

    from toy_models.sweep import grid_points
    for p in grid_points(grid):  # validate every point before any training
        replace(base, **p)
    if report_only:
        from toy_models.sweep import collect_sweep

        res = collect_sweep(out)
        grid = res["grid"]
    else:
        out = prepare_out(out)
        dev = resolve_device(device)
        _threads(dev)
        res = run_sweep(base, grid, out, device=str(dev))
    res.setdefault("base", base.to_dict())
    write_json(out / "result.json", {**res, "versions": versions()})
    # axes: the first two fields swept over several values (K x eps by default); one diagram per value of the rest
    multi = [k for k in grid if len(grid[k]) > 1] + [k for k in grid if len(grid[k]) == 1]
    x, y, others = multi[0], multi[1], multi[2:]
    sections = []
    for combo in itertools.product(*(grid[k] for k in others)):
        fixed = dict(zip(others, combo))
        tables = [phase_table(res, x, y, m, **fixed) for m in ("icl_acc", "iwl_acc")]
        label = ", ".join(f"{k} = {v}" for k, v in fixed.items())
        sections.append(Section(f"Phase diagram ({label})", "Final accuracy on novel classes (ICL) and with the query "
                                f"class absent (IWL) over {x} x {y} at {label}, {res['base']['steps']} steps per point.",
                                [fig.phase_diagram(tables, f"ICL vs IWL ({label})")]))
    sections.append(Section("Points", "", [json_block(res["points"])]))
    write_report(out / "report.html", "ICL / IWL phase diagram", sections,
                 {"points": len(res["points"]), "complete": res.get("complete", True)})
    typer.echo(f"{len(res['points'])} points; wrote {out / 'result.json'} and {out / 'report.html'}")
