"""One attribution study: patching maps, their agreement, EAP edges, a circuit and ablation curves.

This is the computation behind ``iclens report attribution`` and the spec-driven
``iclens report run``: on one model and one task it runs exact activation patching
and/or attribution patching (Nanda 2023) over heads, MLPs and the residual stream
(layer x position), compares the two (Spearman / Pearson), scores EAP edges,
searches the smallest head circuit keeping `threshold` of the metric
(`circuit_finder`), and records ablation curves. It returns plain numbers
(`StudyResult`), never tensors, so it can be written as JSON and drawn.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from circuits.ablation import ABLATIONS, ablation_curve, all_heads
from circuits.attribution import agreement, attribution_patch, edge_attribution
from circuits.circuit_finder import find_circuit
from circuits.patching import activation_patch, head_sweep, mlp_sweep, resid_sweep, task_metric
from circuits.tasks import TASKS, PatchTask
from probes.errors import IclensError

METHODS = ("activation", "attribution", "both")


@dataclass(kw_only=True)
class StudyConfig:
    """What one attribution report computes; saved beside its result."""

    model: str = "gemma-3-270m"
    task: str = "ioi"
    prompts: str = ""  # a JSON prompt file (circuits.tasks.task_from_file); replaces `task` when set
    method: str = "both"
    n_prompts: int = 16
    threshold: float = 0.8
    ablation: str = "resample"
    circuit_search: str = "auto"
    curve_points: int = 16
    max_batch: int = 128
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.prompts:
            if not Path(self.prompts).is_file():
                raise IclensError(f"prompt file {self.prompts} not found: pass a JSON list of clean/corrupted/answer/wrong.")
            self.task = "custom"
        elif self.task not in TASKS:
            raise IclensError(f"unknown task {self.task!r}: use one of {', '.join(TASKS)}.")
        if self.method not in METHODS:
            raise IclensError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}.")
        if self.ablation not in ABLATIONS:
            raise IclensError(f"unknown ablation {self.ablation!r}: use one of {', '.join(ABLATIONS)}.")
        if self.circuit_search not in ("auto", "greedy", "ranked"):
            raise IclensError(f"unknown circuit search {self.circuit_search!r}: use auto, greedy or ranked.")
        if not 0 < self.threshold <= 1:
            raise IclensError(f"threshold {self.threshold} must be in (0, 1].")
        if self.n_prompts < 2 or self.max_batch < 1 or self.curve_points < 2:
            raise IclensError("n_prompts must be >= 2, max_batch >= 1 and curve_points >= 2.")


@dataclass
class StudyResult:
    config: dict
    task: dict
    str_tokens: list[str]
    clean_ld: float
    corrupted_ld: float
    maps: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> {heads, mlp, resid}
    agreement: dict[str, dict[str, float]] = field(default_factory=dict)  # component -> {spearman, pearson}
    edges: list[tuple[str, str, float]] = field(default_factory=list)
    edges_per_head: bool = False
    circuit: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _curve_ks(n: int, points: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n, min(points, n + 1))})


def run_study(model, task: PatchTask, cfg: StudyConfig, progress: bool = True) -> StudyResult:
    """Run every part of the study on `model` and `task` (built for cfg.task)."""
    metric = task_metric(model, task)
    res = StudyResult(asdict(cfg), task.summary(), task.str_tokens, metric.clean_ld, metric.corrupted_ld)
    sweeps = {"heads": head_sweep(model), "resid": resid_sweep(model, task.n_pos)}
    if all(f"blocks.{l}.hook_mlp_out" in model.hook_dict for l in range(model.cfg.n_layers)):
        sweeps["mlp"] = mlp_sweep(model)
    methods = ["activation", "attribution"] if cfg.method == "both" else [cfg.method]
    for m in methods:
        t0 = time.perf_counter()
        res.maps[m] = {}
        for kind, sw in sweeps.items():
            if m == "activation":
                r = activation_patch(model, task, sw, metric=metric, max_batch=cfg.max_batch, progress=progress)
            else:
                r = attribution_patch(model, task, sw, metric=metric)
            res.maps[m][kind] = r.values.tolist()
        res.seconds[m] = time.perf_counter() - t0
    if cfg.method == "both":
        res.agreement = {k: agreement(np.array(res.maps["activation"][k]), np.array(res.maps["attribution"][k]))
                         for k in sweeps}
    t0 = time.perf_counter()
    e = edge_attribution(model, task, metric=metric)
    res.edges, res.edges_per_head = e.top(60), e.per_head
    res.seconds["edges"] = time.perf_counter() - t0

    scores = np.array(res.maps["activation" if "activation" in res.maps else "attribution"]["heads"])
    n_heads = scores.size
    search = cfg.circuit_search if cfg.circuit_search != "auto" else ("greedy" if n_heads <= 16 else "ranked")
    t0 = time.perf_counter()
    circ = find_circuit(model, task, threshold=cfg.threshold, method=search, ablation=cfg.ablation, scores=scores,
                        seed=cfg.seed, metric=metric, max_batch=cfg.max_batch)
    res.circuit = asdict(circ)
    res.seconds["circuit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    heads = all_heads(model)
    order = [heads[i] for i in np.argsort(-np.abs(scores).ravel(), kind="stable")]
    ks = _curve_ks(n_heads, cfg.curve_points)
    kw = dict(method=cfg.ablation, seed=cfg.seed, metric=metric, max_batch=cfg.max_batch)
    res.curves = {"k": ks, "order": order,
                  "most important first": ablation_curve(model, task, order, ks=ks, **kw),
                  "least important first": ablation_curve(model, task, order[::-1], ks=ks, **kw)}
    res.seconds["curves"] = time.perf_counter() - t0
    return res
