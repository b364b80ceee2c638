"""Training loop: SIGKILL + resume reproduces the loss curve, Ctrl-C checkpoints, schedules, bad run folders."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from probes.errors import IclensError
from toy_models.linreg_experiment import LinRegRunConfig, load_run, run_training
from toy_models.models import ToyConfig, ToyTransformer
from toy_models.schedules import EveryK
from toy_models.tasks.linreg import LinearRegressionTask, LinRegConfig
from toy_models.train import TrainConfig, train

REPO = Path(__file__).resolve().parents[2]
CFG = dict(model="gpt", d=3, steps=60, n_layers=1, n_heads=2, d_model=16, batch_size=16, checkpoint_every=10,
           eval_every=30, seed=7)

SCRIPT = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads(1)
    from toy_models.linreg_experiment import LinRegRunConfig, run_training
    cfg = LinRegRunConfig(**{cfg!r})
    run_training(cfg, sys.argv[1], progress=False, callbacks=[lambda info: time.sleep({delay})])
""")


def _one_thread(fn):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(n)


def _start(run_dir: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", SCRIPT.format(cfg=CFG, delay=delay), str(run_dir)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO)


def _wait_for_step(run_dir: Path, proc: subprocess.Popen, at_least: int, timeout: float = 90) -> int:
    t0 = time.time()
    while time.time() - t0 < timeout:
        ptr = run_dir / "checkpoint.json"
        if ptr.exists():
            step = json.loads(ptr.read_text())["step"]
            if step >= at_least:
                return step
        if proc.poll() is not None:
            raise AssertionError(f"training subprocess ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def test_sigkill_then_resume_gives_the_uninterrupted_loss_curve(tmp_path):
    cfg = LinRegRunConfig(**CFG)
    _, full = _one_thread(lambda: run_training(cfg, tmp_path / "full", progress=False))
    run = tmp_path / "killed"
    proc = _start(run, delay=0.05)
    step = _wait_for_step(run, proc, 20)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert step < CFG["steps"]
    _, resumed = _one_thread(lambda: run_training(cfg, run, resume=True, progress=False))
    assert resumed.resumed_from >= 20 and resumed.resumed_from < CFG["steps"]
    assert len(resumed.losses) == len(full.losses) == CFG["steps"]
    assert resumed.losses == pytest.approx(full.losses, rel=1e-6, abs=1e-9)
    assert [e["step"] for e in resumed.evals] == [e["step"] for e in full.evals]
    m_full, _, _ = load_run(tmp_path / "full")
    m_res, _, _ = load_run(run)
    for p, q in zip(m_full.parameters(), m_res.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_ctrl_c_writes_a_checkpoint_at_a_whole_step(tmp_path):
    run = tmp_path / "int"
    cfg = LinRegRunConfig(**CFG)

    def press_ctrl_c(info):
        if info.step == 15:
            os.kill(os.getpid(), signal.SIGINT)  # what a terminal's Ctrl-C delivers

    with pytest.raises(KeyboardInterrupt):
        _one_thread(lambda: run_training(cfg, run, progress=False, callbacks=[press_ctrl_c]))
    ptr = json.loads((run / "checkpoint.json").read_text())
    assert ptr["step"] == 15  # the step in flight finished, then the loop stopped and saved
    state = json.loads((run / ptr["path"] / "state.json").read_text())
    assert state["step"] == 15
    assert signal.getsignal(signal.SIGINT) is not None and callable(signal.getsignal(signal.SIGINT))
    _, res = _one_thread(lambda: run_training(cfg, run, resume=True, progress=False))
    assert res.resumed_from == 15 and res.steps_done == CFG["steps"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_bad_run_folders_are_refused_and_left_untouched(tmp_path):
    cfg = LinRegRunConfig(**{**CFG, "steps": 20})
    run = tmp_path / "run"
    run_training(cfg, run, progress=False)
    before = _digest(run)
    with pytest.raises(IclensError, match="config differs.*d_model"):
        run_training(LinRegRunConfig(**{**CFG, "steps": 20, "d_model": 32}), run, resume=True, progress=False)
    with pytest.raises(IclensError, match="already holds a training run"):
        run_training(cfg, run, progress=False)
    assert _digest(run) == before
    # corrupt weights, then a missing checkpoint folder
    ptr = json.loads((run / "checkpoint.json").read_text())
    (run / ptr["path"] / "model.safetensors").write_bytes(b"not a safetensors file")
    before = _digest(run)
    with pytest.raises(IclensError, match="corrupt"):
        run_training(cfg, run, resume=True, progress=False)
    with pytest.raises(IclensError, match="corrupt"):
        load_run(run)
    assert _digest(run) == before
    (run / "checkpoint.json").unlink()
    with pytest.raises(IclensError, match="no checkpoint"):
        load_run(run)
    with pytest.raises(IclensError, match="does not exist"):
        run_training(cfg, tmp_path / "nothing", resume=True, progress=False)


def test_schedule_resets_exactly_the_named_parameters_at_the_named_steps():
    model = ToyTransformer(ToyConfig(n_layers=1, n_heads=1, d_model=8, d_in=2, n_ctx=8), seed=0)
    task = LinearRegressionTask(LinRegConfig(d=2, n_points=4))
    sched = EveryK(["read_in.W_in"], 4, until=10, seed=3, reset_optimizer_state=True)
    snapshots = {}

    def spy(step, model, opt):
        changed = sched(step, model, opt)
        snapshots[step] = (changed, model.read_in.W_in.detach().clone(), model.W_pos.detach().clone())
        if changed:
            assert not opt.state[model.read_in.W_in]  # optimiser state cleared with it
        return changed

    res = train(model, task, TrainConfig(steps=13, batch_size=4), schedule=spy, progress=False)
    assert [e["step"] for e in res.events] == [4, 8]
    assert all(e["reset"] == ["read_in.W_in"] for e in res.events)
    g = torch.Generator().manual_seed(3 * 1_000_003 + 8)
    assert torch.allclose(snapshots[8][1], torch.randn(2, 8, generator=g) * 0.02)
    assert snapshots[12][0] is None  # past `until`
    with pytest.raises(IclensError, match="unknown parameter"):
        EveryK(["nope"], 2)(2, model, torch.optim.SGD(model.parameters(), lr=0.1))
