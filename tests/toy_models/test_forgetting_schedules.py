"""Forgetting schedules reset exactly the parameters they name at exactly the steps they name, and the
optimiser state only when asked; the POS task's sampler matches its definition."""

from __future__ import annotations

import pytest
import torch

from probes.errors import IclensError
from toy_models.classifier import minimal_classifier
from toy_models.forgetting import (POS_CURVES, ForgettingConfig, POSRunConfig, embedding_names, forgetting_summary,
                                   make_schedule, recorded_curves)
from toy_models.models import ToyConfig, ToyTransformer
from toy_models.tasks.classification import ClassificationConfig
from toy_models.tasks.pos import POS_EVAL_KINDS, SEQ_LEN, POSConfig, POSTask, ambiguous_ranks, fresh_embeddings
from toy_models.train import TrainConfig, train

TOTAL = 23


def _tiny_pos():
    task = POSTask(POSConfig(n_words=20, n_heldout=5, tail_from=0.4))
    model = ToyTransformer(ToyConfig(n_layers=1, n_heads=2, d_model=8, n_ctx=SEQ_LEN, d_vocab=task.cfg.d_vocab,
                                     d_out=2), seed=0)
    return task, model


class Recorder:
    """Wraps a schedule: which parameters its call changed, and the optimiser state it left, per step."""

    def __init__(self, inner):
        self.inner, self.changed, self.state_after, self.values = inner, {}, {}, {}

    def __call__(self, step, model, optimizer):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        out = self.inner(step, model, optimizer) if self.inner else None
        params = dict(model.named_parameters())
        changed = sorted(n for n, p in params.items() if not torch.equal(p, before[n]))
        if changed:
            self.changed[step] = changed
            self.values[step] = {n: params[n].detach().clone() for n in changed}
            self.state_after[step] = {n: {k: v.clone() if torch.is_tensor(v) else v
                                         for k, v in optimizer.state.get(params[n], {}).items()} for n in params}
        return out


def _run(fcfg, lr=1e-2):
    task, model = _tiny_pos()
    rec = Recorder(make_schedule(fcfg, model))
    res = train(model, task, TrainConfig(steps=TOTAL, batch_size=8, lr=lr, seed=1), schedule=rec, progress=False)
    return rec, res


@pytest.mark.parametrize("schedule, until, expected", [
    ("active", 0, [5, 10, 15, 20]),
    ("temporary", 12, [5, 10]),
    ("none", 0, []),
])
def test_resets_exactly_the_named_parameters_at_exactly_the_named_steps(schedule, until, expected):
    fcfg = ForgettingConfig(schedule=schedule, k=5, until=until)
    assert fcfg.reset_steps(TOTAL) == expected
    rec, res = _run(fcfg)
    assert sorted(rec.changed) == expected
    assert all(names == ["embed.W_E"] for names in rec.changed.values())
    assert [e["step"] for e in res.events] == expected
    for vals in rec.values.values():  # fresh N(0, std) draws
        assert vals["embed.W_E"].std().item() == pytest.approx(0.02, rel=0.3)


def test_resets_redraw_at_the_models_embedding_scale_unless_told():
    """std = 0 (default) re-initialises as the model was initialised (embed_std); an explicit std wins."""
    task = POSTask(POSConfig(n_words=20, n_heldout=5, tail_from=0.4))
    model = ToyTransformer(ToyConfig(n_layers=1, n_heads=2, d_model=8, n_ctx=SEQ_LEN, d_vocab=task.cfg.d_vocab,
                                     d_out=2, embed_std=0.5), seed=0)
    assert model.embed.W_E.std().item() == pytest.approx(0.5, rel=0.3)
    assert model.blocks[0].attn.W_Q.std().item() == pytest.approx(0.02, rel=0.3)
    for std, expected in ((0.0, 0.5), (0.05, 0.05)):
        sched = make_schedule(ForgettingConfig(schedule="active", k=1, std=std), model)
        sched(1, model, torch.optim.SGD(model.parameters(), lr=0.1))
        assert model.embed.W_E.std().item() == pytest.approx(expected, rel=0.3)


def test_reset_values_depend_only_on_seed_and_step():
    fcfg = ForgettingConfig(schedule="active", k=5)
    a, _ = _run(fcfg, lr=1e-2)
    b, _ = _run(fcfg, lr=3e-2)  # different training trajectory, same resets
    for step in a.values:
        assert torch.equal(a.values[step]["embed.W_E"], b.values[step]["embed.W_E"])
    c, _ = _run(ForgettingConfig(schedule="active", k=5, seed=9))
    assert not torch.equal(a.values[5]["embed.W_E"], c.values[5]["embed.W_E"])


@pytest.mark.parametrize("reset_opt", [False, True])
def test_optimizer_state_cleared_only_when_asked(reset_opt):
    rec, _ = _run(ForgettingConfig(schedule="active", k=5, reset_optimizer_state=reset_opt))
    for step, states in rec.state_after.items():
        others = [n for n in states if n != "embed.W_E"]
        assert all(states[n] for n in others), "other parameters keep their Adam state"
        if reset_opt:
            assert states["embed.W_E"] == {}
        else:
            assert int(states["embed.W_E"]["step"]) == step  # moments kept, step count continues


def test_named_parameters_and_continuous_inputs():
    fcfg = ForgettingConfig(schedule="active", k=3, names=("blocks.0.attn.W_Q",))
    task, model = _tiny_pos()
    rec = Recorder(make_schedule(fcfg, model))
    train(model, task, TrainConfig(steps=7, batch_size=4, seed=0), schedule=rec, progress=False)
    assert rec.changed == {3: ["blocks.0.attn.W_Q"], 6: ["blocks.0.attn.W_Q"]}
    clf = minimal_classifier(ClassificationConfig(n_classes=16, n_labels=4))
    assert embedding_names(clf) == ["read_in.W_in"]
    assert make_schedule(ForgettingConfig(schedule="none"), clf) is None
    with pytest.raises(IclensError, match="unknown parameter"):
        make_schedule(ForgettingConfig(schedule="active", k=1, names=("nope",)), clf)(1, clf, torch.optim.SGD(
            clf.parameters(), lr=0.1))


@pytest.mark.parametrize("kw, msg", [
    ({"schedule": "sometimes"}, "none, active, temporary"),
    ({"schedule": "temporary", "k": 10, "until": 5}, "until"),
    ({"schedule": "active", "k": 0}, "k must be"),
])
def test_bad_forgetting_config(kw, msg):
    with pytest.raises(IclensError, match=msg):
        ForgettingConfig(**kw)


# -- the POS task ---------------------------------------------------------------------------------
def test_pos_sequences_follow_the_definition():
    task = POSTask(POSConfig(n_words=40, n_heldout=10, p_ambiguous=0.2))
    b = task.sample(3000, torch.Generator().manual_seed(0))
    toks, cop = b["tokens"], task.cfg.copula
    assert toks.shape == (3000, SEQ_LEN)
    ctx = toks[:, :-1]
    assert torch.all((ctx == cop).sum(1) == 1)
    cop_pos = (ctx == cop).float().argmax(1)
    assert torch.equal(cop_pos, b["n_before"]) and b["n_before"].min() >= 1 and b["n_before"].max() <= 4
    words = ctx[ctx != cop].view(3000, 5)
    assert torch.all(words < task.cfg.n_words)  # no held-out word in training
    assert all(len(r.unique()) == 5 for r in words[:200])
    q = toks[:, -1]
    where = (ctx == q[:, None]).float().argmax(1)
    assert torch.all((ctx == q[:, None]).sum(1) == 1)
    assert torch.equal(b["target"], (where > cop_pos).long())  # role = side of the copula
    # non-ambiguous words only take their own role; ambiguous ones take both
    pos = torch.arange(SEQ_LEN - 1).expand(3000, -1)
    after = pos > cop_pos[:, None]
    w_flat, a_flat = ctx[ctx != cop], after[ctx != cop]
    clean = ~task.ambiguous[w_flat]
    assert torch.equal(a_flat[clean].long(), task.role[w_flat[clean]])
    amb = w_flat[~clean]
    assert (task.role[amb] != a_flat[~clean].long()).any()


def test_pos_ambiguous_words_sit_at_evenly_spaced_ranks():
    # 20 words per role, 4 ambiguous: the middle ranks of the blocks 0-4, 5-9, 10-14, 15-19, in both roles
    task = POSTask(POSConfig(n_words=40, n_heldout=10, p_ambiguous=0.2))
    for r in (0, 1):
        assert task.rank[task.ambiguous & (task.role == r)].tolist() == [2, 7, 12, 17]
    assert ambiguous_ranks(1000, 0.05)[:3].tolist() == [10, 30, 50] and len(ambiguous_ranks(1000, 0.05)) == 50
    assert len(ambiguous_ranks(1000, 0.0)) == 0


def test_pos_absent_queries_need_the_weights():
    task = POSTask(POSConfig(n_words=40, n_heldout=10, p_ambiguous=0.2, p_absent=0.3))
    b = task.sample(4000, torch.Generator().manual_seed(0))
    ctx, q = b["tokens"][:, :-1], b["tokens"][:, -1]
    absent = ~(ctx == q[:, None]).any(1)
    assert abs(absent.float().mean().item() - 0.3) < 0.03
    assert torch.all(q < task.cfg.n_words)  # training words only
    clean = absent & ~task.ambiguous[q]
    assert torch.equal(b["target"][clean], task.role[q[clean]])  # only its known role can answer
    # present rows keep the copula rule
    cop_pos = (ctx == task.cfg.copula).float().argmax(1)
    where = (ctx == q[:, None]).float().argmax(1)
    assert torch.equal(b["target"][~absent], (where > cop_pos).long()[~absent])
    with pytest.raises(IclensError, match="p_absent"):
        POSConfig(p_absent=1.0)


def test_pos_zipf_frequencies():
    task = POSTask(POSConfig(n_words=200, zipf_alpha=1.0, p_ambiguous=0.0))
    b = task.sample(4000, torch.Generator().manual_seed(1))
    ctx = b["tokens"][:, :-1]
    counts = torch.bincount(ctx[ctx < 200], minlength=200).float()
    nouns = counts[:100]
    # frequent words first; without-replacement draws flatten the head a little, so compare orders of magnitude
    assert nouns[0] > nouns[9] > nouns[99]
    assert nouns[:10].sum() / nouns[-50:].sum() > 3


def test_pos_eval_sets():
    task = POSTask(POSConfig(n_words=40, n_heldout=10, p_ambiguous=0.2))
    cop = task.cfg.copula
    for kind in ("tail", "switched", "switched_tail", "heldout"):
        b = task.eval_batch(kind, 500)
        ctx = b["tokens"][:, :-1]
        words = ctx[ctx != cop].view(500, 5)
        slot_role = (torch.arange(5)[None, :] >= b["n_before"][:, None]).long()
        if kind == "heldout":
            assert torch.all(words >= task.cfg.n_words) and torch.all(words < cop)
            continue
        assert not task.ambiguous[words].any()
        if kind.startswith("switched"):
            assert torch.all(task.role[words] != slot_role)
        else:
            assert torch.equal(task.role[words], slot_role)
        if kind.endswith("tail"):
            assert task.tail[words].all()
    with pytest.raises(IclensError, match="in_dist"):
        task.eval_batch("other", 3)


def test_fresh_embeddings_restores_rows():
    task, model = _tiny_pos()
    W = model.embed.W_E.detach().clone()
    rows = range(task.cfg.n_words, task.cfg.n_words + task.cfg.n_heldout)
    with pytest.raises(RuntimeError):
        with fresh_embeddings(model, rows, std=0.02, seed=3):
            now = model.embed.W_E.detach()
            assert not torch.equal(now[20:25], W[20:25]) and torch.equal(now[:20], W[:20])
            raise RuntimeError
    assert torch.equal(model.embed.W_E.detach(), W)


def test_fresh_embeddings_like_draws_the_reference_gaussian():
    """like=rows: new rows follow the mean and covariance of the reference rows (checked on 20k draws)."""
    model = ToyTransformer(ToyConfig(n_layers=1, n_heads=1, d_model=4, n_ctx=SEQ_LEN, d_vocab=20_100, d_out=2), seed=0)
    ref = torch.randn(100, 4) @ torch.tensor([[2.0, 0, 0, 0], [1.0, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 0.1]]) + 3.0
    with torch.no_grad():
        model.embed.W_E[:100] = ref
    with fresh_embeddings(model, range(100, 20_100), like=range(100), seed=1):
        new = model.embed.W_E.detach()[100:].double()
        assert torch.allclose(new.mean(0), ref.double().mean(0), atol=0.05)
        assert torch.allclose(torch.cov(new.T), torch.cov(ref.double().T), atol=0.08)
    assert torch.equal(model.embed.W_E.detach()[:100], ref)
    with pytest.raises(IclensError, match="exactly one"):
        with fresh_embeddings(model, range(100, 110), std=0.1, like=range(100)):
            pass


def test_recorded_curves_are_those_every_run_has():
    old = [{"step": 1, **{k: 0.5 for k in POS_EVAL_KINDS}}]  # a run from before "heldout_like"
    new = [{"step": 1, **{k: 0.5 for k in POS_CURVES}}]
    assert recorded_curves(new) == list(POS_CURVES)
    assert recorded_curves(new, old) == list(POS_EVAL_KINDS)
    assert recorded_curves(new, []) == list(POS_CURVES)  # a run without evaluations constrains nothing


def test_forgetting_summary_verdicts():
    rise_fall = [{"step": s, "heldout": h, "switched": 0.2, "switched_tail": 0.9}
                 for s, h in ((1, 0.5), (2, 0.95), (3, 0.6))]
    s = forgetting_summary(rise_fall)
    assert s["transient"] and not s["persistent"] and s["heldout"]["peak_step"] == 2
    keep = [{"step": s, "heldout": h, "switched": 0.2, "switched_tail": 0.9} for s, h in ((1, 0.5), (2, 0.9), (3, 0.9))]
    s = forgetting_summary(keep)
    assert s["persistent"] and not s["transient"] and s["dual_process"]
    # long curves: one unlucky last evaluation is not a decay, a sustained fall is
    flat = [{"step": i, "heldout": 0.9} for i in range(39)] + [{"step": 39, "heldout": 0.6}]
    s = forgetting_summary(flat)
    assert not s["transient"] and abs(s["heldout"]["final"] - (3 * 0.9 + 0.6) / 4) < 1e-9
    fall = [{"step": i, "heldout": 0.9 if i < 20 else 0.6} for i in range(40)]
    s = forgetting_summary(fall)
    assert s["transient"] and s["heldout"]["peak"] == 0.9 and s["heldout"]["final"] == 0.6
    with pytest.raises(IclensError):
        POSRunConfig(steps=0)
