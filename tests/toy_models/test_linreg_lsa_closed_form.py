"""The trained LSA reaches the Zhang-Frei-Bartlett global minimum: N/(N+d+1) I and test error d(d+1)/(N+d+1)."""

import pytest
import torch

from toy_models.linreg_experiment import LinRegRunConfig, lsa_summary, run_training, shift_sweep


@pytest.fixture(scope="module")
def trained_lsa():
    cfg = LinRegRunConfig(model="lsa", d=5, n_points=21, steps=300, batch_size=500, lr=0.03, checkpoint_every=0,
                          eval_every=300)
    model, res = run_training(cfg, None, progress=False)
    return model, cfg, res


def test_learned_matrix_and_error_match_closed_form(trained_lsa):
    model, cfg, res = trained_lsa
    s = lsa_summary(model, cfg, n_prompts=20000)
    assert s["scale_closed_form"] == pytest.approx(0.769, abs=1e-3)
    assert s["scale_learned_mean"] == pytest.approx(s["scale_closed_form"], rel=0.03)
    assert s["rel_frobenius_error"] < 0.05  # the whole matrix is the scaled identity, not just its trace
    assert s["test_error_learned"] == pytest.approx(30 / 26, rel=0.05)
    # learning happened: the initial loss (u = 0.1 * tiny W11) is near E[y^2] = d
    assert res.losses[0] > 4.0 and sum(res.losses[-20:]) / 20 < 1.3


def test_lsa_tolerates_task_and_query_shift_but_not_covariate_shift(trained_lsa):
    model, cfg, _ = trained_lsa
    sweep = shift_sweep({"lsa": model}, {"lsa": cfg}, k=12, n_prompts=500, scales=(0.25, 1.0, 4.0))
    base = sweep["task"]["1.0"]["lsa"]["rel"]
    assert sweep["task"]["4.0"]["lsa"]["rel"] == pytest.approx(base, rel=0.15)
    assert sweep["query"]["4.0"]["lsa"]["rel"] == pytest.approx(base, rel=0.15)
    assert sweep["covariate"]["4.0"]["lsa"]["rel"] > 1.0  # worse than predicting 0
    assert sweep["covariate"]["4.0"]["least squares"]["rel"] < 1e-6  # least squares is scale-free
    assert torch.isfinite(torch.tensor(sweep["covariate"]["0.25"]["lsa"]["err"]))
