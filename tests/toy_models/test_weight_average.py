"""The training loop's parameter average (ema_decay): the EMA recursion by hand, exact resume, summaries."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from probes.errors import IclensError
from toy_models.forgetting import POSRunConfig, average_evals, forgetting_summary, make_pos_eval_fn
from toy_models.models import ToyTransformer
from toy_models.tasks.pos import POSTask
from toy_models.train import TrainConfig, train

TINY = dict(n_words=20, n_heldout=10, d_model=16, batch_size=8, eval_size=16, eval_every=3, checkpoint_every=4,
            steps=12, ema_decay=0.8, seed=5)


def _setup(**kw):
    cfg = POSRunConfig(**{**TINY, **kw})
    task = POSTask(cfg.task_config())
    return cfg, task, ToyTransformer(cfg.model_config(), seed=cfg.seed)


def test_average_is_the_ema_of_the_weights_after_each_step():
    cfg, task, model = _setup(eval_every=1, checkpoint_every=0)
    seen = []
    res = train(model, task, cfg.train_config(), progress=False,
                callbacks=[lambda info: seen.append(info.model.embed.W_E.detach().double().clone())],
                eval_fn=lambda m, step: {"w": float(m.embed.W_E.detach().double().sum())})
    ema = seen[0]  # the average starts at the weights after the first step, then moves 1 - decay of the way each step
    for i, (e, w) in enumerate(zip(res.evals, seen)):
        if i:
            ema = 0.8 * ema + 0.2 * w
        assert e["w"] == pytest.approx(float(w.sum()), abs=1e-5)
        assert e["ema_w"] == pytest.approx(float(ema.sum()), abs=1e-4)
    assert res.evals[-1]["ema_w"] != pytest.approx(res.evals[-1]["w"], abs=1e-3)  # not the live weights
    assert average_evals(res.evals)[2] == {"step": 3, "w": res.evals[2]["ema_w"]}


def test_average_survives_ctrl_c_and_resume_exactly(tmp_path):
    def run(folder, resume=False, callbacks=()):
        cfg, task, model = _setup()
        ev = make_pos_eval_fn(task, cfg.eval_size, std=model.cfg.embed_std, seed=1, draws=2)
        return train(model, task, cfg.train_config(), run_dir=folder, resume=resume, progress=False,
                     callbacks=callbacks, eval_fn=ev)

    full = run(tmp_path / "full")

    def press_ctrl_c(info):
        if info.step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", callbacks=[press_ctrl_c])
    ptr = json.loads((tmp_path / "cut" / "checkpoint.json").read_text())
    assert (tmp_path / "cut" / ptr["path"] / "average.safetensors").is_file()
    resumed = run(tmp_path / "cut", resume=True)
    assert resumed.resumed_from == 6
    assert [e["ema_heldout"] for e in resumed.evals] == [e["ema_heldout"] for e in full.evals]
    a, b = (load_file(str(p / "checkpoints" / "step-0000012" / "average.safetensors")) for p in (tmp_path / "full",
                                                                                                 tmp_path / "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert int(a["n_averaged"]) == 12


def test_bad_decay_and_a_missing_average_are_refused(tmp_path):
    for bad in (1.0, -0.1):
        with pytest.raises(IclensError, match="ema decay"):
            TrainConfig(ema_decay=bad)
    cfg, task, model = _setup(ema_decay=0.0)
    train(model, task, cfg.train_config(), run_dir=tmp_path / "r", run_config={"same": 1}, progress=False)
    cfg, task, model = _setup()  # the same folder, now expecting an average its checkpoint never had
    with pytest.raises(IclensError, match="average.safetensors missing"):
        train(model, task, cfg.train_config(), run_dir=tmp_path / "r", run_config={"same": 1}, resume=True,
              progress=False)


def test_summary_judges_the_average_on_its_own():
    # live held-out accuracy falls back to the prior; the average keeps the structure
    live, avg = [0.6, 0.85, 0.85, 0.85, 0.72, 0.72], [0.6, 0.85, 0.88, 0.88, 0.87, 0.87]
    evals = [{"step": i, "heldout": h, "ema_heldout": a} for i, (h, a) in enumerate(zip(live, avg))]
    s = forgetting_summary(evals)
    assert s["transient"] and not s["ema"]["transient"]
    assert s["ema"]["heldout"]["final"] == pytest.approx(0.87)
    assert "ema" not in forgetting_summary([{k: v for k, v in e.items() if not k.startswith("ema_")} for e in evals])
