"""Page, ICL vs IWL: in-context vs in-weights classification runs (Reddy 2023), forgetting schedules on the
part-of-speech task (Anand et al. 2024) and phase-diagram sweeps, from the folders `iclens train
icl-classification`, `iclens train pos-forgetting` and `iclens sweep` write (library: toy_models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamlit as st

from apps.explorer import state
from apps.figures import icl_iwl as fig
from apps.figures import toy as toyfig
from probes.errors import IclensError

MAX_DEPTH = 4
KINDS = ("icl-classification", "pos-forgetting", "sweep")
TRANSITION_LABELS = {"icl_acc": "ICL transition step", "prev_token_score": "prev-token score rises",
                     "induction_score": "induction score rises", "iwl_acc": "IWL accuracy rises"}

st.title("ICL vs IWL")
root = state.settings().runs_dir
st.caption(f"Runs of `iclens train icl-classification`, `iclens train pos-forgetting` and `iclens sweep` under `{root}`.")


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise IclensError(f"{path} is not valid JSON ({e}): re-run the command that wrote it.") from None


def find_icl_runs(folder: Path, base: Path) -> dict[str, str]:
    """{folder relative to `folder`: kind} for sweep folders (sweep.json) and icl-classification / pos-forgetting runs
    (config.json naming the experiment), at most MAX_DEPTH deep; folders resolving outside `base` are skipped."""
    found: dict[str, str] = {}
    for name in ("sweep.json", "config.json"):
        for f in folder.rglob(name):
            rel = f.parent.relative_to(folder)
            if len(rel.parts) > MAX_DEPTH or not f.resolve().is_relative_to(base):
                continue
            if name == "sweep.json":
                kind = "sweep"
            else:
                try:
                    kind = json.loads(f.read_text(encoding="utf-8")).get("experiment")
                except (ValueError, AttributeError):
                    continue
            if kind in KINDS:
                found.setdefault(str(rel) if rel.parts else ".", kind)
    return dict(sorted(found.items()))


@st.cache_data(max_entries=32, show_spinner=False)
def run_view(run_dir: str, kind: str, mtime: int) -> dict[str, Any]:
    """What the page draws for one run, from result.json, else (a run still training, a sweep point) its checkpoint."""
    from toy_models.checkpoint import load_checkpoint, read_config

    folder = Path(run_dir)
    if (folder / "result.json").is_file():
        return {"finished": True, **_json(folder / "result.json")}
    saved = read_config(folder)
    if kind == "icl-classification":
        from toy_models.classifier import minimal_classifier
        from toy_models.icl_iwl_experiment import ICLRunConfig, detect_transition

        cfg = ICLRunConfig(**saved["run"])
        model = minimal_classifier(cfg.task_config(), cfg.classifier_config())
        st_ = load_checkpoint(folder, model, None, None, restore_rngs=False)
        steps = [e["step"] for e in st_.evals]
        curves = {k: [e[k] for e in st_.evals] for k in (st_.evals[0] if st_.evals else {}) if k != "step"}
        trans = {k: detect_transition(steps, curves[k]) for k in TRANSITION_LABELS if k in curves}
        return {"finished": False, "config": cfg.to_dict(), "steps": steps, "curves": curves, "transitions": trans,
                "losses": st_.losses, "steps_done": st_.step}
    from toy_models.forgetting import POSRunConfig, forgetting_summary
    from toy_models.models import ToyTransformer

    cfg = POSRunConfig(**saved["run"])
    st_ = load_checkpoint(folder, ToyTransformer(cfg.model_config()), None, None, restore_rngs=False)
    return {"finished": False, "config": {"run": cfg.to_dict(), "forgetting": saved.get("forgetting", {})},
            "evals": st_.evals, "summary": forgetting_summary(st_.evals), "losses": st_.losses, "events": st_.events,
            "steps_done": st_.step}


@st.cache_data(max_entries=16, show_spinner=False)
def sweep_view(sweep_dir: str, mtime: int) -> dict[str, Any]:
    """A sweep's grid and the points finished so far (`toy_models.sweep.collect_sweep`: running, killed or done)."""
    from toy_models.sweep import collect_sweep, grid_points

    sw = collect_sweep(sweep_dir)
    return {**sw, "n_points": len(grid_points(sw["grid"]))}


def _mtime(folder: Path) -> int:
    """Changes when a run writes a checkpoint, its result or (sweeps) a finished point."""
    files = [folder / n for n in ("result.json", "checkpoint.json", "sweep.json")]
    files += list((folder / "points").glob("*/point.json"))
    return max((f.stat().st_mtime_ns for f in files if f.is_file()), default=0)


def loss_figure(losses: list[float]):
    """Per-step training loss (raw and smoothed, at most ~2000 points a trace)."""
    return toyfig.training_curve(losses, title="Training loss").update_layout(yaxis_title="cross-entropy")


def show_classification(run: dict[str, Any]) -> None:
    steps, curves = run["steps"], run["curves"]
    if not steps:
        raise IclensError("this run has no evaluation yet: wait for its first evaluation step and reload.")
    trans = run.get("transitions") or {}
    t = trans.get("icl_acc")
    c = st.columns(6)
    for col, (k, label) in zip(c, TRANSITION_LABELS.items()):
        col.metric(label, f"{trans[k]['step']:.0f}" if trans.get(k) else "none")
    c[4].metric("final ICL accuracy", f"{curves['icl_acc'][-1]:.3f}")
    c[5].metric("final IWL accuracy", f"{curves['iwl_acc'][-1]:.3f}")
    if t:
        st.caption(f"ICL accuracy leaves its plateau ({t['plateau']:.2f}) at step {t['step']:.0f}, rising from step "
                   f"{t['start']:.0f} to {t['end']:.0f} ({'abrupt' if t['abrupt'] else 'gradual'}) to {t['final']:.2f}.")
    st.plotly_chart(fig.transition_curves(steps, curves, t), key="icl_curves")
    a, b = st.columns(2)
    if run.get("losses"):
        a.plotly_chart(loss_figure(run["losses"]), key="icl_loss")
    if run.get("ablation"):
        b.plotly_chart(fig.ablation_bars(run["ablation"]), key="icl_ablation")
    for name, f in (run.get("nested_logit_fit") or {}).items():
        st.plotly_chart(fig.nested_logit_fit(f, curves["icl_loss"], f"nested-logit fit ({name.replace('_', ' ')})"),
                        key=f"icl_fit_{name}")


def _schedule(run: dict[str, Any]) -> str:
    return run["config"].get("forgetting", {}).get("schedule", "?")


def show_forgetting(run: dict[str, Any], name: str, others: dict[str, dict[str, Any]]) -> None:
    """One pos-forgetting run (accuracy per eval set, summary, verdicts); `others` drawn on the same axes."""
    from toy_models.forgetting import VERDICTS, average_evals, average_kinds, recorded_curves

    evals, summary = run["evals"], run.get("summary") or {}
    if not evals:
        raise IclensError("this run has no evaluation yet: wait for its first evaluation step and reload.")
    curves = recorded_curves(evals, *(o["evals"] for o in others.values()))
    schedule = _schedule(run)
    resets = [e["step"] for e in run.get("events", [])]
    st.caption(f"schedule **{schedule}**" + (f"; embeddings reset at steps {resets}" if resets else ""))
    if others:
        series = {f"{schedule} ({name})": evals, **{f"{_schedule(o)} ({n})": o["evals"] for n, o in others.items()}}
        title = "POS task: forgetting schedules compared"
    else:
        series, title = {schedule: evals}, f"POS task: {schedule} schedule"
    st.plotly_chart(fig.forgetting_curves(series, curves, title), key="pos_curves")
    if run.get("losses"):
        st.plotly_chart(loss_figure(run["losses"]), key="pos_loss")
    kinds = [k for k in curves if k in summary]
    st.dataframe({"eval set": kinds, "final": [summary[k]["final"] for k in kinds],
                  "peak": [summary[k]["peak"] for k in kinds], "peak step": [summary[k]["peak_step"] for k in kinds],
                  "drop": [summary[k]["drop"] for k in kinds]}, hide_index=True, key="pos_summary")
    verdicts = [v for v in VERDICTS if summary.get(v)]
    st.caption("verdicts (toy_models.forgetting.forgetting_summary): " + (", ".join(verdicts) or "none"))
    averaged = {n: r["evals"] for n, r in {name: run, **others}.items() if average_evals(r["evals"])}
    if averaged:
        st.plotly_chart(fig.live_vs_average(averaged, average_kinds(averaged), "Live weights vs their moving average"),
                        key="pos_average")
        ema_verdicts = [v for v in VERDICTS if summary.get("ema", {}).get(v)]
        st.caption("Dashed: an exponential moving average of the weights (--ema-decay), the centre the live weights "
                   "jitter around; its verdicts: " + (", ".join(ema_verdicts) or "none"))
    by_rank = {n: r["context_by_rank"] for n, r in {name: run, **others}.items() if r.get("context_by_rank")}
    if by_rank:
        st.plotly_chart(fig.context_by_rank(by_rank, "Answered from the context, by frequency rank (end of run)"),
                        key="pos_by_rank")
        st.caption("Unambiguous words put in the role opposite to their training role: 1 = the model follows the "
                   "context, 0 = its weights. Dual process: frequent words low, rare words high.")
    if run.get("query_attention"):
        st.plotly_chart(fig.query_attention(run["query_attention"], "Where the query looks (end of run)"),
                        key="pos_query_attention")
        st.caption("Attention from the query to its earlier occurrence (top) and to the copula (bottom), per "
                   "layer and head. Matching the occurrence is the in-context strategy; the copula alone gives the "
                   "0.7 prior.")


def show_sweep(sw: dict[str, Any]) -> None:
    from toy_models.sweep import phase_table

    grid = sw["grid"]
    st.caption(f"{len(sw['points'])} of {sw['n_points']} points finished; grid {grid}")
    if not sw["points"]:
        raise IclensError("no point of this sweep has finished yet: wait, or rerun `iclens sweep` with the same options.")
    fields = list(grid)
    a, b = st.columns(2)
    x = a.selectbox("x axis", fields, index=fields.index("n_classes") if "n_classes" in fields else 0, key="sweep_x")
    y_opts = [f for f in fields if f != x] or fields
    y = b.selectbox("y axis", y_opts, index=y_opts.index("eps") if "eps" in y_opts else 0, key="sweep_y")
    fixed = {}
    others = [f for f in fields if f not in (x, y)]
    cols = st.columns(max(1, len(others)))
    for col, f in zip(cols, others):
        fixed[f] = col.selectbox(f"{f} fixed at", grid[f], key=f"sweep_fix_{f}")
    tables = [phase_table(sw, x, y, m, **fixed) for m in ("icl_acc", "iwl_acc")]
    st.plotly_chart(fig.phase_diagram(tables, "ICL vs IWL: final accuracy"), key="sweep_phase")


with state.guard():
    folder = state.folder_box(root, "icl_sub", "icl", label="Folder (inside the runs folder)", placeholder="e.g. icl",
                              missing_root=f"run `iclens train icl-classification --out {root}/NAME` or start the "
                                           "explorer with --runs-dir pointing at your runs.")
    runs = find_icl_runs(folder, root)
    if not runs:
        raise IclensError(f"no icl-classification, pos-forgetting or sweep runs under {folder}: run e.g. "
                          f"`iclens train icl-classification --out {folder}/icl` first.")
    pick = st.selectbox(f"Run ({len(runs)})", list(runs), key="icl_pick", format_func=lambda r: f"{r} ({runs[r]})")
    kind = runs[pick]
    run_dir = state.safe_path(folder, pick)
    if kind == "sweep":
        show_sweep(sweep_view(str(run_dir), _mtime(run_dir)))
    else:
        run = run_view(str(run_dir), kind, _mtime(run_dir))
        if not run["finished"]:
            what = "a sweep point" if (run_dir / "point.json").is_file() else "unfinished"
            st.caption(f"{what} (no result.json): curves from its latest checkpoint, step {run['steps_done']}")
        if kind == "icl-classification":
            show_classification(run)
        else:
            peers = [r for r, k in runs.items() if k == "pos-forgetting" and r != pick]
            chosen = st.multiselect("compare with (same axes)", peers, key="pos_compare") if peers else []
            others = {}
            for r in chosen:
                peer = state.safe_path(folder, r)
                others[r] = run_view(str(peer), "pos-forgetting", _mtime(peer))
            show_forgetting(run, pick, others)
