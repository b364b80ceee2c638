"""Attribution page's computation: activation / attribution patching, agreement, EAP edges, circuit.

The steps of `circuits.study.run_study` that the explorer draws (patching maps,
the two methods' agreement, the edge scores and the found circuit), called one by
one so the page can show progress and Streamlit's Stop can land between steps;
ablation curves are left to `iclens report attribution`. Returns plain numbers in
the layout of `StudyResult` (maps[method][kind], agreement, edges, circuit) so the
figures of `apps.figures.circuits` draw it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from probes.errors import IclensError

METHODS = ("both", "activation", "attribution")


def build_task(model, spec: dict[str, Any]):
    """A PatchTask from a page spec: {"task": name, "n_prompts", "seed"} or {"clean", "corrupted", "answer", "wrong"}."""
    from circuits.tasks import make_task, task_from_pairs

    if spec.get("task"):
        return make_task(model, spec["task"], n=int(spec.get("n_prompts", 8)), seed=int(spec.get("seed", 0)))
    clean, corrupted = (spec.get("clean") or "").strip(), (spec.get("corrupted") or "").strip()
    answer, wrong = spec.get("answer") or "", spec.get("wrong") or ""
    if not clean or not corrupted:
        raise IclensError("type both a clean and a corrupted prompt (same number of tokens).")
    if not answer.strip() or not wrong.strip():
        raise IclensError("type the answer the clean prompt should get and the wrong (corrupted) answer, one token each.")
    return task_from_pairs(model, "custom", [clean], [corrupted], [answer], [wrong])


def patching_study(model, spec: dict[str, Any], *, method: str = "both", threshold: float = 0.8,
                   ablation: str = "resample", max_batch: int = 64, seed: int = 0,
                   progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """Maps, agreement, edges and circuit for one task spec (see `build_task`)."""
    from circuits.attribution import agreement, attribution_patch, edge_attribution
    from circuits.circuit_finder import find_circuit
    from circuits.patching import activation_patch, head_sweep, resid_sweep, task_metric

    if method not in METHODS:
        raise IclensError(f"unknown method {method!r}: use one of {', '.join(METHODS)}.")
    task = build_task(model, spec)
    metric = task_metric(model, task)
    if abs(metric.clean_ld - metric.corrupted_ld) < 1e-6:
        raise IclensError("the clean and corrupted prompts give the same logit difference, so there is nothing to "
                          "patch: make the corrupted prompt change the answer.")
    sweeps = {"heads": head_sweep(model), "resid": resid_sweep(model, task.n_pos)}
    methods = ["activation", "attribution"] if method == "both" else [method]
    steps, done = len(methods) * len(sweeps) + 2, 0
    out: dict[str, Any] = {"str_tokens": task.str_tokens, "task": task.summary(), "clean_ld": metric.clean_ld,
                           "corrupted_ld": metric.corrupted_ld, "maps": {}, "agreement": {}}

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done / steps, message)

    for m in methods:
        out["maps"][m] = {}
        for kind, sweep in sweeps.items():
            if m == "activation":
                r = activation_patch(model, task, sweep, metric=metric, max_batch=max_batch)
            else:
                r = attribution_patch(model, task, sweep, metric=metric)
            out["maps"][m][kind] = np.asarray(r.values, dtype=float).tolist()
            tick(f"{m} patching: {kind}")
    if len(methods) == 2:
        out["agreement"] = {k: agreement(np.array(out["maps"]["activation"][k]), np.array(out["maps"]["attribution"][k]))
                            for k in sweeps}
    edges = edge_attribution(model, task, metric=metric)
    out["edges"], out["edges_per_head"] = [list(e) for e in edges.top(40)], edges.per_head
    tick("edge attribution")
    scores = np.array(out["maps"][methods[0]]["heads"])
    search = "greedy" if scores.size <= 16 else "ranked"
    circuit = find_circuit(model, task, threshold=threshold, method=search, ablation=ablation, scores=scores,
                           seed=seed, metric=metric, max_batch=max_batch)
    out["circuit"] = asdict(circuit)
    tick("circuit search")
    return out
