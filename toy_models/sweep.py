"""Resumable parameter sweeps for the ICL / IWL phase diagram (Reddy 2023 Fig. 2; Chan et al. 2022).

A sweep is a base `ICLRunConfig` and a grid {field: [values]}; every point of the Cartesian product
trains one run in `out/points/<name>/` and leaves a `point.json` (its final accuracies) there when
it finishes. `sweep.json` in `out` holds the sweep's config and is compared on restart, so a
sweep killed mid-way continues: finished points are read back, the interrupted one resumes from
its checkpoint, the rest run. `phase_table` turns the points into the [value x value] grids of
final ICL and IWL accuracy the phase-diagram figure draws.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from probes.errors import IclensError
from probes.results import to_jsonable, write_json
from toy_models.checkpoint import config_diff
from toy_models.icl_iwl_experiment import ICLRunConfig, run_training

SWEEP_FILE, POINT_FILE = "sweep.json", "point.json"


def grid_points(grid: dict[str, list]) -> list[dict[str, Any]]:
    """The Cartesian product of a grid as a list of {field: value}, in a fixed order."""
    valid = {f.name for f in fields(ICLRunConfig)}
    bad = [k for k in grid if k not in valid]
    if bad:
        raise IclensError(f"unknown sweep field(s) {bad}: choose from {', '.join(sorted(valid))}.")
    if not grid or any(len(v) == 0 for v in grid.values()):
        raise IclensError("a sweep needs at least one field with at least one value.")
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def point_name(point: dict[str, Any]) -> str:
    return "_".join(f"{k}={v}" for k, v in point.items())


def default_runner(cfg: ICLRunConfig, run_dir: Path, *, resume: bool, device: str, callbacks=()) -> dict[str, Any]:
    """Train one point and return its final accuracies and transition (what the phase diagram needs)."""
    from toy_models.icl_iwl_experiment import detect_transition

    _, _, res = run_training(cfg, run_dir, resume=resume, device=device, progress=False, callbacks=callbacks)
    last = res.evals[-1]
    steps = [e["step"] for e in res.evals]
    t = detect_transition(steps, [e["icl_acc"] for e in res.evals])
    return {"icl_acc": last["icl_acc"], "iwl_acc": last["iwl_acc"], "flip_acc": last["flip_acc"],
            "induction_score": last["induction_score"], "icl_transition": t["step"] if t else None,
            "steps_per_s": res.steps_per_s, "resumed_from": res.resumed_from}


def run_sweep(base: ICLRunConfig, grid: dict[str, list], out: str | Path, *, device: str = "cpu",
              runner: Callable[..., dict[str, Any]] = default_runner, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) a sweep in `out`; returns {"grid", "points": [{**point, **metrics}]}.

    A restart with another base config or grid is refused (choose a new --out).
    """
    out = Path(out)
    points = grid_points(grid)
    # the grid overrides the base's value of every swept field, so only the other fields identify the sweep
    conf = {"base": {k: v for k, v in base.to_dict().items() if k not in grid}, "grid": to_jsonable(grid)}
    sweep_file = out / SWEEP_FILE
    if sweep_file.exists():
        try:
            saved = json.loads(sweep_file.read_text())
        except ValueError:
            raise IclensError(f"{sweep_file} is corrupt: delete it or choose a new --out.") from None
        diff = config_diff(saved, conf)
        if diff:
            raise IclensError(f"{out} holds a different sweep ({'; '.join(diff[:3])}): choose a new --out.")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_json(sweep_file, conf)
    rows = []
    for point in tqdm(points, desc="sweep", disable=not progress):
        run_dir = out / "points" / point_name(point)
        done = run_dir / POINT_FILE
        if done.exists():
            rows.append(json.loads(done.read_text()))
            continue
        cfg = replace(base, **point)
        metrics = runner(cfg, run_dir, resume=(run_dir / "checkpoint.json").exists(), device=device)
        row = {**point, **metrics}
        write_json(done, row)
        rows.append(row)
    return {"grid": to_jsonable(grid), "points": rows}


def collect_sweep(out: str | Path) -> dict[str, Any]:
    """The finished points of a sweep folder (e.g. one still running or killed), without training anything."""
    out = Path(out)
    try:
        conf = json.loads((out / SWEEP_FILE).read_text())
    except FileNotFoundError:
        raise IclensError(f"{out / SWEEP_FILE} missing: {out} is not a sweep folder.") from None
    except ValueError:
        raise IclensError(f"{out / SWEEP_FILE} is corrupt: delete it or choose a new --out.") from None
    rows = []
    for point in grid_points(conf["grid"]):
        done = out / "points" / point_name(point) / POINT_FILE
        if done.exists():
            rows.append(json.loads(done.read_text()))
    return {"grid": conf["grid"], "base": conf["base"], "points": rows,
            "complete": len(rows) == len(grid_points(conf["grid"]))}


def phase_table(sweep: dict[str, Any], x: str, y: str, metric: str, **fixed: Any) -> dict[str, Any]:
    """A [len(y values) x len(x values)] table of `metric` over two swept fields (others fixed to `fixed`)."""
    grid = sweep["grid"]
    for f in (x, y):
        if f not in grid:
            raise IclensError(f"{f!r} was not swept: choose from {', '.join(grid)}.")
    xs, ys = grid[x], grid[y]
    z = [[None] * len(xs) for _ in ys]
    for row in sweep["points"]:
        if all(row.get(k) == v for k, v in fixed.items()):
            z[ys.index(row[y])][xs.index(row[x])] = row[metric]
    return {"x": xs, "y": ys, "z": z, "x_name": x, "y_name": y, "metric": metric}
