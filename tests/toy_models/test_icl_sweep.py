"""The phase-diagram sweep: a sweep killed mid-way continues from its finished points (and the interrupted
point from its checkpoint); a different sweep in the same folder is refused; phase tables."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from probes.errors import IclensError
from toy_models.icl_iwl_experiment import ICLRunConfig
from toy_models.sweep import collect_sweep, default_runner, grid_points, phase_table, run_sweep

BASE = ICLRunConfig(n_classes=16, n_labels=4, dim=7, n_items=4, burstiness=2, d_model=16, mlp_hidden=8, steps=20,
                    batch_size=8, eval_every=10, eval_size=16, checkpoint_every=10, seed=1)
GRID = {"n_classes": [16, 32], "eps": [0.0, 0.4]}


class Boom(Exception):
    pass


def test_killed_sweep_resumes_from_finished_points_and_checkpoints(tmp_path):
    calls = []

    def crashing(cfg, run_dir, *, resume, device):
        calls.append((cfg.n_classes, cfg.eps, resume))
        if len(calls) == 3:  # the third point dies after its step-10 checkpoint
            def die(info):
                if info.step == 15:
                    raise Boom
            return default_runner(cfg, run_dir, resume=resume, device=device, callbacks=[die])
        return default_runner(cfg, run_dir, resume=resume, device=device)

    with pytest.raises(Boom):
        run_sweep(BASE, GRID, tmp_path, runner=crashing, progress=False)
    assert len(calls) == 3
    partial = collect_sweep(tmp_path)
    assert not partial["complete"] and [(r["n_classes"], r["eps"]) for r in partial["points"]] == [(16, 0.0), (16, 0.4)]
    first = json.loads((tmp_path / "points" / "n_classes=16_eps=0.0" / "point.json").read_text())
    calls.clear()
    res = run_sweep(BASE, GRID, tmp_path, runner=crashing, progress=False)
    # finished points are read back, not rerun; the killed one resumes from its checkpoint
    assert calls == [(32, 0.0, True), (32, 0.4, False)]
    rows = {(r["n_classes"], r["eps"]): r for r in res["points"]}
    assert set(rows) == {(16, 0.0), (16, 0.4), (32, 0.0), (32, 0.4)}
    assert rows[(32, 0.0)]["resumed_from"] == 10 and rows[(32, 0.4)]["resumed_from"] == 0
    assert rows[(16, 0.0)] == first
    table = phase_table(res, "n_classes", "eps", "icl_acc")
    assert table["z"][1][0] == rows[(16, 0.4)]["icl_acc"] and all(v is not None for r in table["z"] for v in r)


def test_other_sweep_in_same_folder_refused(tmp_path):
    fake = lambda cfg, run_dir, *, resume, device: {"icl_acc": 0.5, "iwl_acc": 0.5}  # noqa: E731
    run_sweep(BASE, {"eps": [0.0]}, tmp_path, runner=fake, progress=False)
    with pytest.raises(IclensError, match="different sweep"):
        run_sweep(BASE, {"eps": [0.1]}, tmp_path, runner=fake, progress=False)
    with pytest.raises(IclensError, match="different sweep"):  # an unswept base field differs
        run_sweep(replace(BASE, steps=21), {"eps": [0.0]}, tmp_path, runner=fake, progress=False)
    # a swept field's base value is overridden by the grid: not a different sweep
    again = run_sweep(replace(BASE, eps=0.3), {"eps": [0.0]}, tmp_path, runner=fake, progress=False)
    assert again["points"] == [{"eps": 0.0, "icl_acc": 0.5, "iwl_acc": 0.5}]
    assert collect_sweep(tmp_path)["complete"]
    with pytest.raises(IclensError, match="not a sweep folder"):
        collect_sweep(tmp_path / "nope")


def test_grid_validation():
    assert len(grid_points({"n_classes": [1, 2, 3], "eps": [0, 1]})) == 6
    with pytest.raises(IclensError, match="unknown sweep field"):
        grid_points({"kk": [1]})
    with pytest.raises(IclensError, match="at least one"):
        grid_points({"eps": []})
    with pytest.raises(IclensError, match="was not swept"):
        phase_table({"grid": {"eps": [0]}, "points": []}, "eps", "n_classes", "icl_acc")
