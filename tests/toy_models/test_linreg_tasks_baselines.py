"""Linear-regression task, registry and baselines against known answers."""

import pytest
import torch

from probes.errors import IclensError
from toy_models.baselines import Averaging, LeastSquares, NearestNeighbours, OneStepGD, Ridge
from toy_models.tasks.linreg import (LinearRegressionTask, LinRegConfig, error_curve, interleave, sample_prompts,
                                     shifted_config)
from toy_models.tasks.registry import get_task_class, make_task, task_names


def test_registry_lists_valid_names_on_typo():
    assert "linreg" in task_names()
    assert get_task_class("linreg") is LinearRegressionTask
    with pytest.raises(IclensError, match=r"did you mean 'linreg'.*valid tasks are .*linreg"):
        make_task("linreq")
    assert make_task("linreg", d=3).cfg.n_points == 8


def test_sampler_is_seeded_and_noiseless_linear():
    cfg = LinRegConfig(d=4)
    a = sample_prompts(cfg, 8, torch.Generator().manual_seed(5))
    b = sample_prompts(cfg, 8, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    xs, ys = a
    assert xs.shape == (8, 10, 4) and ys.shape == (8, 10)
    # ys lie in the span: one w per prompt fits every point exactly
    w = torch.linalg.lstsq(xs.double(), ys.double().unsqueeze(-1)).solution
    assert torch.allclose(xs.double() @ w, ys.double().unsqueeze(-1), atol=1e-4)


def test_covariance_options_statistics():
    g = torch.Generator().manual_seed(0)
    xs, _ = sample_prompts(LinRegConfig(d=3, x_dist="scaled", x_scale=2.0), 4000, g)
    assert xs.var().item() == pytest.approx(4.0, rel=0.03)
    xs, _ = sample_prompts(LinRegConfig(d=3, x_dist="random", n_points=400), 2, g)
    c0, c1 = (torch.cov(xs[i].T) for i in range(2))
    assert not torch.allclose(c0, c1, atol=0.1)  # a different Lambda per prompt


def test_curriculum_grows_dims_and_points():
    task = LinearRegressionTask(LinRegConfig(d=5, curriculum={"dims_start": 2, "points_start": 4, "every": 10}))
    g = torch.Generator().manual_seed(0)
    b0 = task.sample(3, g, step=0)
    assert b0["xs"].shape == (3, 4, 5) and b0["xs"][..., 2:].abs().max() == 0
    assert task.curriculum_state(25) == (4, 8)
    assert task.curriculum_state(10_000) == (5, 12)


def test_interleave_layout():
    xs, ys = torch.arange(12.0).view(1, 2, 6)[..., :3].reshape(1, 2, 3), torch.tensor([[7.0, 8.0]])
    t = interleave(xs, ys)
    assert t.shape == (1, 4, 3)
    assert torch.equal(t[0, 0], xs[0, 0]) and torch.equal(t[0, 2], xs[0, 1])
    assert t[0, 1].tolist() == [7.0, 0.0, 0.0] and t[0, 3].tolist() == [8.0, 0.0, 0.0]


def test_least_squares_known_answers():
    cfg = LinRegConfig(d=4)
    xs, ys = sample_prompts(cfg, 6000, torch.Generator().manual_seed(1))
    pred = LeastSquares()(xs, ys)
    err = ((pred - ys.double()) ** 2).mean(0) / cfg.d
    assert err[4:].max() < 1e-8  # exact once k >= d (noiseless)
    for k in range(1, 4):  # min-norm projection error: (d - k)/d of the signal
        assert err[k].item() == pytest.approx((4 - k) / 4, rel=0.06)
    assert Ridge(alpha=1e-8)(xs, ys)[:, 6:].sub(pred[:, 6:]).abs().max() < 1e-4


def test_averaging_gd_and_nn():
    xs, ys = sample_prompts(LinRegConfig(d=3), 50, torch.Generator().manual_seed(2))
    assert torch.allclose(Averaging()(xs, ys), OneStepGD(lr=1.0)(xs, ys))
    assert torch.allclose(OneStepGD(lr=0.5)(xs, ys), 0.5 * Averaging()(xs, ys))
    # 3-NN on a hand example: query at 0 with neighbours at distances 0.1, 0.2, 0.3, 5
    x = torch.tensor([[[0.1], [0.2], [5.0], [0.3], [0.0]]])
    y = torch.tensor([[1.0, 2.0, 100.0, 3.0, 0.0]])
    assert NearestNeighbours(3)(x, y)[0, 4].item() == pytest.approx(2.0)
    assert NearestNeighbours(3)(x, y)[0, 1].item() == pytest.approx(1.0)  # one neighbour only


def test_preconditioned_gd_matches_closed_form_error():
    # ZFB: the global-minimum LSA at prompt length k has test error d(d+1)/(k+d+1) (Lambda = I)
    d = 3
    cfg = LinRegConfig(d=d, n_points=11)
    curve = error_curve({"gd": OneStepGD(preconditioner="zfb")}, cfg, n_prompts=20000, seed=0)
    for k in (5, 10):
        assert curve["gd"][k] * d == pytest.approx(d * (d + 1) / (k + d + 1), rel=0.05)
    assert curve["zero"][3] == pytest.approx(1.0, rel=0.05)


def test_shifts_and_bad_k():
    cfg = LinRegConfig(d=2)
    assert shifted_config(cfg, "task", 4.0).w_scale == 4.0
    assert shifted_config(cfg, "covariate", 0.5).x_scale == 0.5
    with pytest.raises(IclensError, match="unknown shift"):
        shifted_config(cfg, "label", 1.0)
    with pytest.raises(IclensError, match="exceeds the context"):
        error_curve({"ls": LeastSquares()}, cfg, k_max=cfg.n_points)
    with pytest.raises(IclensError, match="d must be >= 1"):
        LinRegConfig(d=0)
    # predicting 0 under covariate shift c: E[y^2]/d = c^2
    c = error_curve({}, cfg, shift="covariate", scale=2.0, n_prompts=5000)["zero"]
    assert sum(c) / len(c) == pytest.approx(4.0, rel=0.05)
    # query shift scales only the query: least squares stays exact past k = d
    q = error_curve({"ls": LeastSquares()}, cfg, shift="query", scale=4.0, n_prompts=4000)
    assert max(q["ls"][2:]) < 1e-8 and q["zero"][3] == pytest.approx(16.0, rel=0.06)
