"""`iclens report attribution` and `iclens report run spec.yaml`: scripted patching studies.

`report attribution` runs one `circuits.study` on one model and task and writes
OUT/result.json + OUT/report.html. `report run` reads a YAML/JSON spec that lists
several studies (validated before any model is loaded) and writes each into its
own subfolder plus an index result.json, so a whole study is one command:

    out: runs/ioi-study
    defaults: {n_prompts: 16, method: both}
    reports:
      - {name: gemma-ioi, model: gemma-3-270m, task: ioi}
      - {name: gemma-induction, model: gemma-3-270m, task: induction}
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import typer

from apps.cli_base import DEVICE_OPT, SEED_OPT, prepare_out, report_app, seed_everything
from probes.errors import IclensError


def _labels(n_layers: int, n_heads: int) -> list[str]:
    return [f"L{l}H{h}" for l in range(n_layers) for h in range(n_heads)]


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_study_report(out: Path, result: dict) -> None:
    """OUT/report.html from a study result dict (as in result.json)."""
    from apps.figures.circuits import ablation_curves, agreement_scatter, circuit_graph, head_map, layer_bars, resid_map
    from apps.report import Section, json_block, write_report

    cfg, maps = result["config"], result["maps"]
    sections = []
    for m, mp in maps.items():
        heads = np.array(mp["heads"])
        items = [head_map(heads, f"{m} patching: head outputs (layer x head)"),
                 resid_map(mp["resid"], result["str_tokens"], f"{m} patching: residual stream (layer x position)")]
        if "mlp" in mp:
            items.append(layer_bars(mp["mlp"], f"{m} patching: MLP outputs (layer)"))
        sections.append(Section(f"{m.capitalize()} patching", (
            "Denoising: the corrupted prompts are run with one component's clean activation written in; "
            "the normalised metric reads 1 when that alone restores the clean logit difference, 0 when it does nothing."
            if m == "activation" else
            "Linear estimate (one clean forward, one corrupted forward and one backward) of the same maps."), items))
    if result["agreement"]:
        n_l, n_h = np.array(maps["activation"]["heads"]).shape
        items = [agreement_scatter(maps["activation"]["heads"], maps["attribution"]["heads"],
                                   "heads: attribution vs activation", _labels(n_l, n_h)),
                 agreement_scatter(maps["activation"]["resid"], maps["attribution"]["resid"],
                                   "residual stream: attribution vs activation")]
        text = "; ".join(f"{k}: Spearman {_fmt(v['spearman'])}, Pearson {_fmt(v['pearson'])}" for k, v in result["agreement"].items())
        sections.append(Section("Agreement of the two methods", text, items))
    n_l, n_h = np.array(next(iter(maps.values()))["heads"]).shape
    circ = result["circuit"]
    sections.append(Section("Circuit", (
        f"Smallest head set found by {circ['method']} search keeping >= {circ['threshold']:.0%} of the metric with every "
        f"other head {circ['ablation']}-ablated: {len(circ['heads'])} heads, faithfulness {circ['faithfulness']:.3f}. "
        f"Edges: strongest EAP scores ({'per head' if result['edges_per_head'] else 'per attention layer: this model has no per-head residual decomposition'})."),
        [circuit_graph(circ["heads"], result["edges"], n_l, n_h, "found circuit")]))
    sections.append(Section("Ablation curves", "Heads ablated in order of |activation-patching score| "
                            "(attribution score when only attribution ran).", [ablation_curves(result)]))
    sections.append(Section("Configuration", "", [json_block({"config": cfg, "task": result["task"]})]))
    facts = {"model": cfg["model"], "task": cfg["task"], "prompts": result["task"]["n_prompts"],
             "clean logit diff": round(result["clean_ld"], 4), "corrupted logit diff": round(result["corrupted_ld"], 4),
             "circuit size": len(circ["heads"]), "faithfulness": round(circ["faithfulness"], 4)}
    for k, v in result["agreement"].items():
        facts[f"Spearman ({k})"] = _fmt(v["spearman"])
    for k, v in result["seconds"].items():
        facts[f"seconds: {k}"] = round(v, 2)
    write_report(out / "report.html", f"Attribution study: {cfg['task']} on {cfg['model']}", sections, facts)


def run_one(cfg, out: Path, progress: bool = True, models: dict | None = None) -> dict:
    """Load (or reuse from `models`), compute, write result.json and report.html for one StudyConfig."""
    from circuits.study import run_study
    from circuits.tasks import make_task, task_from_file
    from probes.models import load_model, resolve_device
    from probes.results import to_jsonable, versions, write_json

    prepare_out(out)
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    models = {} if models is None else models
    key = (cfg.model, str(resolve_device(cfg.device)))
    if key not in models:
        models[key] = load_model(cfg.model, device=key[1])
    model = models[key]
    task = task_from_file(model, cfg.prompts) if cfg.prompts else make_task(model, cfg.task, n=cfg.n_prompts, seed=cfg.seed)
    res = to_jsonable(run_study(model, task, cfg, progress=progress))
    res["seconds"]["total"] = time.perf_counter() - t0
    res["versions"] = versions()
    write_json(out / "result.json", res)
    write_study_report(out, res)
    return res


@report_app.command("attribution")
def attribution_cmd(
    model: str = typer.Option("gemma-3-270m", "--model", help="Embedded name, tiny-llama/tiny-gpt2, folder or HF id."),
    task: str = typer.Option("ioi", "--task", help="ioi, icl-capitals, icl-antonyms, icl-uppercase or induction."),
    prompts: str = typer.Option("", "--prompts", help="JSON list of {clean, corrupted, answer, wrong}: your own task."),
    method: str = typer.Option("both", "--method", help="activation, attribution or both (adds their agreement)."),
    n_prompts: int = typer.Option(16, "--n-prompts", help="Clean/corrupted prompt pairs."),
    threshold: float = typer.Option(0.8, "--threshold", help="Fraction of the metric the circuit must keep."),
    ablation: str = typer.Option("resample", "--ablation", help="zero, mean or resample (heads outside the circuit)."),
    max_batch: int = typer.Option(128, "--max-batch", help="Sequences per forward pass; lower it when memory is short."),
    out: Path = typer.Option(..., "--out", help="Output folder for result.json and report.html."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Patching maps, attribution agreement, circuit and ablation curves for one model and task."""
    from circuits.study import StudyConfig

    cfg = StudyConfig(model=model, task=task, prompts=prompts, method=method, n_prompts=n_prompts, threshold=threshold,
                      ablation=ablation, max_batch=max_batch, seed=seed, device=device)
    prepare_out(out)
    res = run_one(cfg, out)
    typer.echo(f"circuit {res['circuit']['heads']} faithfulness {res['circuit']['faithfulness']:.3f}; "
               f"wrote {out / 'result.json'} and {out / 'report.html'}")


def load_spec(path: Path, out: Path | None, seed: int, device: str) -> tuple[Path, list[tuple[str, object]]]:
    """Parse and validate a study spec: (base output folder, [(name, StudyConfig)])."""
    import yaml

    from circuits.study import StudyConfig

    if not path.is_file():
        raise IclensError(f"spec file {path} not found: pass a YAML or JSON file.")
    try:
        spec = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise IclensError(f"spec {path} is not valid YAML/JSON ({str(e).splitlines()[0]}): fix the file.") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("reports"), list) or not spec["reports"]:
        raise IclensError(f"spec {path} needs a non-empty 'reports' list (and optional 'out', 'defaults').")
    base = out or Path(spec.get("out", "iclens-reports"))
    if not out and not base.is_absolute():
        base = path.parent / base
    fields = {f.name for f in dataclasses.fields(StudyConfig)}
    runs, names = [], set()
    for i, entry in enumerate(spec["reports"]):
        merged = {"seed": seed, "device": device, **(spec.get("defaults") or {}), **(entry or {})}
        name = str(merged.pop("name", f"{i:02d}-{merged.get('model', 'model')}-{merged.get('task', 'task')}"))
        unknown = set(merged) - fields
        if unknown:
            raise IclensError(f"spec report {i}: unknown keys {sorted(unknown)}; allowed: name, {', '.join(sorted(fields))}.")
        if name in names or "/" in name:
            raise IclensError(f"spec report {i}: name {name!r} is repeated or contains '/': give each report a unique name.")
        names.add(name)
        runs.append((name, StudyConfig(**merged)))
    return base, runs


@report_app.command("run")
def run_cmd(
    spec: Path = typer.Argument(..., help="YAML/JSON spec: out, defaults, reports: [{name, model, task, method, ...}]."),
    out: Path = typer.Option(None, "--out", help="Base output folder (overrides the spec's 'out')."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
) -> None:
    """Run every attribution study a spec file lists; each gets its own folder, plus an index result.json."""
    from probes.results import write_json

    base, runs = load_spec(spec, out, seed, device)
    prepare_out(base)
    for name, _ in runs:
        prepare_out(base / name)
    index, models = [], {}
    for name, cfg in runs:
        typer.echo(f"[{name}] {cfg.model} / {cfg.task} / {cfg.method}")
        res = run_one(cfg, base / name, models=models)  # each model is loaded once per spec
        index.append({"name": name, "config": dataclasses.asdict(cfg), "circuit": res["circuit"]["heads"],
                      "faithfulness": res["circuit"]["faithfulness"], "agreement": res["agreement"]})
    write_json(base / "result.json", {"spec": str(spec), "reports": index})
    typer.echo(f"wrote {len(index)} reports under {base}")
