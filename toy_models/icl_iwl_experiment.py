"""In-context vs in-weights learning on Reddy's bursty classification task (Reddy 2023).

One run trains the minimal network (`toy_models.classifier`) with the shared training loop and
tracks, at every evaluation point, accuracy on the three eval sets (novel classes = ICL, flipped
labels, query class absent = IWL), the ICL cross-entropy, and the two progress measures (layer-1
previous-token score, layer-2 induction score). After training it

- detects the transition step of each curve (`detect_transition`: first crossing of the midpoint
  between plateau and final level, with the 10 % -> 90 % rise width to call it abrupt);
- ablates the layer-2 head (and, as a control, layer 1) and re-measures ICL and IWL accuracy;
- fits a nested-logit model of induction-head formation (`fit_nested_logits`).

The nested-logit model is the phenomenological picture of Reddy Sec. 5 in a form we can integrate:
three logits learned by gradient descent at rate eta (the attention logits a, b start at s0, c at 0),
  p1 = e^a / (e^a + n1 - 1)                 previous-token attention (n1 keys seen by a label),
  m_c = B e^(b p1) / (B e^(b p1) + N - B)   induction attention on the B labels after the query's class,
  loss = -log softmax(c m_c, c m_o, 0)      read-out of the copied labels (m_o: each other context label).
The gradient on a is proportional to b c, on b to c p1: first c learns to spread over the context
labels (the plateau at about B / N accuracy), then b and a grow together and the loss drops abruptly. The two constants (eta, s0) are fitted by
least squares to the measured ICL loss, either on the whole run or only on the steps before the
transition, and the model's own transition step is the predicted plateau length.

Deviation from the paper: Adam (lr 1e-3) instead of SGD. The CPU preset (K = 4096, B = 1, 8k steps, about
5 min on one core) leaves its plateau after about 1,500 steps and jumps to 0.9 within about 500. Two choices make
the jump abrupt rather than a slow sigmoid: the tokens enter the residual stream as they are (read-in = identity,
as in Reddy's network; a random read-in at init 0.02 stretched the rise over 3,000 steps) and B = 1 (with B = 4
the two-class contexts let a blurred copy of the preceding items reach 0.9 before a sharp previous-token head
exists, so accuracy creeps up instead of jumping).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from probes.errors import IclensError
from toy_models.checkpoint import load_checkpoint, read_config
from toy_models.classifier import ClassifierConfig, ablate_head, head_scores, minimal_classifier
from toy_models.tasks.classification import ClassificationConfig, ClassificationTask, accuracy
from toy_models.train import Schedule, TrainConfig, TrainResult, train

EVAL_SETS = ("icl", "flip", "iwl")


@dataclass(kw_only=True)
class ICLRunConfig(ClassificationConfig):
    """One classification run: the task's knobs (inherited, one set of defaults) plus model and training.

    CPU preset: Adam lr 1e-3, batch 128, 8k steps, K = 4096, B = 1, eps = 0.1, identity read-in (d_model = 0),
    K large enough that ICL wins within the budget. `optimizer="sgd"` (with `momentum`) is the paper's optimiser.
    Flat, so a sweep names any field directly.
    """

    n_classes: int = 4096
    burstiness: int = 1
    d_model: int = 0
    mlp_hidden: int = 128
    init_std: float = 0.02
    steps: int = 8000
    batch_size: int = 128
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.0
    eval_every: int = 0
    eval_size: int = 512
    checkpoint_every: int = 1000

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise IclensError("steps and batch_size must be >= 1 and lr > 0.")
        if self.eval_size < 16:
            raise IclensError(f"eval_size must be >= 16 (got {self.eval_size}).")
        if self.eval_every == 0:
            self.eval_every = max(1, self.steps // 50)
        super().__post_init__()  # validates the task knobs
        self.classifier_config()  # and the network's and the optimiser's, where they are defined
        self.train_config()

    def classifier_config(self) -> ClassifierConfig:
        return ClassifierConfig(d_model=self.d_model, mlp_hidden=self.mlp_hidden, init_std=self.init_std)

    def task_config(self) -> ClassificationConfig:
        return ClassificationConfig(**{f.name: getattr(self, f.name) for f in fields(ClassificationConfig)})

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, optimizer=self.optimizer,
                           momentum=self.momentum, eval_every=self.eval_every, checkpoint_every=self.checkpoint_every,
                           seed=self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_eval_fn(task: ClassificationTask, size: int, *, seed: int = 1234):
    """eval_fn(model, step) for the training loop: accuracies on the eval sets, ICL loss, head scores."""
    sets = {k: task.eval_batch(k, size, seed=seed + i) for i, k in enumerate(EVAL_SETS)}

    @torch.no_grad()
    def eval_fn(model, step: int) -> dict[str, float]:
        out = {f"{k}_acc": accuracy(task, model, b) for k, b in sets.items()}
        dev = next(model.parameters()).device
        logits = task.logits(model, sets["icl"]["tokens"].to(dev))
        out["icl_loss"] = float(F.cross_entropy(logits, sets["icl"]["target"].to(dev)))
        out.update(head_scores(model, sets["icl"]))
        return out

    return eval_fn


def run_training(cfg: ICLRunConfig, out: str | Path | None, *, resume: bool = False, device: str = "cpu",
                 schedule: Schedule | None = None, schedule_config: dict | None = None, progress: bool = True,
                 callbacks=()) -> tuple[torch.nn.Module, ClassificationTask, TrainResult]:
    """Train the minimal network on the classification task; checkpoints in `out` (None: none)."""
    task = ClassificationTask(cfg.task_config())
    model = minimal_classifier(task.cfg, cfg.classifier_config(), seed=cfg.seed).to(device)
    run_config = {"experiment": "icl-classification", "run": cfg.to_dict(), "schedule": schedule_config}
    res = train(model, task, cfg.train_config(), run_dir=out, run_config=run_config, resume=resume,
                schedule=schedule, eval_fn=make_eval_fn(task, cfg.eval_size, seed=10_000 + cfg.seed),
                progress=progress, device=device, callbacks=callbacks)
    return model, task, res


def load_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[torch.nn.Module, ClassificationTask, ICLRunConfig]:
    """Rebuild the trained model of a run folder (its latest checkpoint)."""
    conf = read_config(Path(run_dir))
    if conf.get("experiment") != "icl-classification":
        raise IclensError(f"{run_dir} is not an icl-classification run folder.")
    cfg = ICLRunConfig(**conf["run"])
    task = ClassificationTask(cfg.task_config())
    model = minimal_classifier(task.cfg, cfg.classifier_config()).to(device)
    load_checkpoint(Path(run_dir), model, None, None, restore_rngs=False)
    return model.eval(), task, cfg


# -- transition detection -----------------------------------------------------------------------
def detect_transition(steps, values, *, min_rise: float = 0.2) -> dict[str, Any] | None:
    """Where a curve leaves its plateau for its final level: None when it never rises by `min_rise`.

    The plateau level is the median over the second half of the time before the first crossing of
    the min-max midpoint (so an early partial rise, e.g. to "any context label", is not mistaken for
    the transition). Returns plateau and final levels, `step` (first crossing of their midpoint),
    `start`/`end` (last step at <= 10 % of the rise before it, first at >= 90 % after it) and `abrupt`
    (the rise takes less than half as long as the plateau before it).
    """
    s, v = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(v) < 3:
        return None
    peak = int(np.argmax(v))
    hi = float(v.max())
    lo = float(v[: peak + 1].min())
    if hi - lo < min_rise:
        return None
    lo_i = int(np.argmin(v[: peak + 1]))
    mid = lo_i + int(np.argmax(v[lo_i:] >= lo + 0.5 * (hi - lo)))
    window = (s >= s[mid] / 2) & (np.arange(len(s)) < mid)
    if window.any() and np.median(v[window]) > lo:
        lo = float(np.median(v[window]))
        if hi - lo < min_rise:
            return None
        first = int(np.nonzero(window)[0][0])
        mid = first + int(np.argmax(v[first:] >= lo + 0.5 * (hi - lo)))
    below = np.nonzero(v[: mid + 1] <= lo + 0.1 * (hi - lo))[0]
    start = int(below[-1]) if len(below) else 0
    end = mid + int(np.argmax(v[mid:] >= lo + 0.9 * (hi - lo)))
    width = s[end] - s[start]
    return {"step": float(s[mid]), "start": float(s[start]), "end": float(s[end]), "plateau": lo, "final": hi,
            "width": float(width), "abrupt": bool(width <= 0.5 * max(s[start], s[1] - s[0]))}


# -- nested-logit model ---------------------------------------------------------------------------
def nested_logit_curve(eta, s0, n_steps: int, *, n_items: int, burstiness: int, n_labels: int,
                       record_every: int = 1) -> dict[str, np.ndarray]:
    """Gradient descent on the nested logits (a, b from s0; c from 0) at rate eta; vectorised over eta/s0 arrays.

    p1 = e^a / (e^a + n1 - 1) is the previous-token attention (n1 = N + 1 keys seen by a label on
    average); among the N label tokens the query weights the B after its class by e^(b p1), the
    others by 1 (m_c, m_o: mass on the correct label and on each other context label); the label
    logits are c m_c, c m_o for the N/B - 1 other context labels and 0 for the rest. At b = 0 the
    read-out c first learns to spread over the context labels (the plateau), then b and a grow.
    Returns loss, p1, p2 (= m_c) and p (probability of the correct label) every `record_every`
    steps, as arrays [time, *shape].
    """
    eta, s0 = np.broadcast_arrays(np.asarray(eta, float), np.asarray(s0, float))
    a, b, c = s0.copy(), s0.copy(), np.zeros_like(s0)
    N, B, L = n_items, max(burstiness, 1), n_labels
    n1, k_other = n_items + 1, max(N // B - 1, 0)
    rest = L - k_other - 1
    rec: dict[str, list] = {"loss": [], "p1": [], "p2": [], "p": []}
    for t in range(n_steps + 1):
        p1 = 1 / (1 + (n1 - 1) * np.exp(-np.clip(a, -50, 50)))
        eu = np.exp(np.clip(b * p1, -50, 50))
        den = B * eu + N - B
        m_c, m_o = B * eu / den, B / den
        zc, zo = c * m_c, c * m_o
        top = np.maximum(np.maximum(zc, zo), 0)
        ec, eo, e0 = np.exp(zc - top), np.exp(zo - top), np.exp(-top)
        Z = ec + k_other * eo + rest * e0
        p, q = ec / Z, eo / Z
        if t % record_every == 0:
            for k, val in (("loss", -np.log(p)), ("p1", p1), ("p2", m_c), ("p", p)):
                rec[k].append(val)
        gc = -(1 - p) * m_c + k_other * q * m_o
        gu = c * (-(1 - p) * m_c * (1 - m_c) - k_other * q * m_o * m_c)
        gb, ga = gu * p1, gu * b * p1 * (1 - p1)
        a, b, c = a - eta * ga, b - eta * gb, c - eta * gc
    return {k: np.stack(v) for k, v in rec.items()}


def _fit_grid(etas, s0s, s, y, use, horizon, every, kw):
    E, S0 = np.meshgrid(etas, s0s, indexing="ij")
    curves = nested_logit_curve(E, S0, horizon, record_every=every, **kw)
    idx = np.clip(np.round(s / every).astype(int), 0, curves["loss"].shape[0] - 1)
    sse = ((curves["loss"][idx][use] - y[use, None, None]) ** 2).mean(0)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return float(etas[i]), float(s0s[j]), float(np.sqrt(sse[i, j]))


def fit_nested_logits(steps, icl_loss, *, n_items: int, burstiness: int, n_labels: int, icl_acc=None,
                      fit_until: float | int | None = None) -> dict[str, Any]:
    """Fit (eta, s0) of the nested-logit model to a measured ICL-loss curve (coarse grid, then a finer one).

    fit_until: use only evaluation steps <= this (a prediction from the plateau alone).
    Returns the constants, the model's curves at `steps`, its transition step (of the probability of
    the correct label) and the measured transition (of `icl_acc` if given, else of -loss).
    """
    s = np.asarray(steps, dtype=float)
    y = np.asarray(icl_loss, dtype=float)
    use = s <= fit_until if fit_until is not None else np.ones_like(s, dtype=bool)
    if use.sum() < 3:
        raise IclensError("fit_nested_logits needs at least 3 evaluation points in the fitted window.")
    kw = {"n_items": n_items, "burstiness": burstiness, "n_labels": n_labels}
    horizon = int(s.max() * 2)
    every = max(1, horizon // 1000)
    eta, s0, _ = _fit_grid(np.logspace(-4, 0, 21), np.linspace(-5.0, 1.0, 13), s, y, use, horizon, every, kw)
    eta, s0, rmse = _fit_grid(eta * np.logspace(-0.2, 0.2, 9), s0 + np.linspace(-0.25, 0.25, 9),
                              s, y, use, horizon, every, kw)
    curves = nested_logit_curve(eta, s0, horizon, record_every=every, **kw)
    idx = np.clip(np.round(s / every).astype(int), 0, curves["loss"].shape[0] - 1)
    predicted = detect_transition(np.arange(curves["p"].shape[0]) * every, curves["p"], min_rise=0.2)
    measured = detect_transition(s, icl_acc) if icl_acc is not None else detect_transition(s, -y)
    return {"eta": eta, "s0": s0, "rmse": rmse, "fit_until": fit_until, "steps": s.tolist(),
            "predicted_loss": curves["loss"][idx].tolist(), "predicted_p_correct": curves["p"][idx].tolist(),
            "predicted_p1": curves["p1"][idx].tolist(), "predicted_p2": curves["p2"][idx].tolist(),
            "predicted_transition": predicted["step"] if predicted else None,
            "measured_transition": measured["step"] if measured else None}


# -- after training ------------------------------------------------------------------------------
def ablation(model, task: ClassificationTask, *, size: int = 1000, seed: int = 777) -> dict[str, dict[str, float]]:
    """ICL and IWL accuracy intact, with the layer-2 head zero-ablated, and with the layer-1 head ablated."""
    sets = {k: task.eval_batch(k, size, seed=seed + i) for i, k in enumerate(("icl", "iwl"))}
    out = {"intact": {k: accuracy(task, model, b) for k, b in sets.items()}}
    for layer in (1, 0):
        with ablate_head(model, layer):
            out[f"layer{layer + 1}_ablated"] = {k: accuracy(task, model, b) for k, b in sets.items()}
    out["chance"] = {"icl": 1 / task.cfg.n_labels, "iwl": 1 / task.cfg.n_labels}
    return out


def summarize(model, task: ClassificationTask, cfg: ICLRunConfig, res: TrainResult) -> dict[str, Any]:
    """result.json content of a run: curves, transitions, ablation, nested-logit fits."""
    ev = res.evals
    steps = [e["step"] for e in ev]
    curve = {k: [e[k] for e in ev] for k in ev[0] if k != "step"} if ev else {}
    trans = {k: detect_transition(steps, curve[k]) for k in ("icl_acc", "prev_token_score", "induction_score", "iwl_acc")
             if k in curve}
    result: dict[str, Any] = {
        "config": cfg.to_dict(), "steps_done": res.steps_done, "steps_per_s": res.steps_per_s,
        "elapsed_s": res.elapsed_s, "resumed_from": res.resumed_from, "losses": res.losses, "steps": steps,
        "curves": curve, "events": res.events, "transitions": trans,
        "final": {k: v[-1] for k, v in curve.items()},
        "ablation": ablation(model, task, size=max(200, cfg.eval_size)),
    }
    fits = {}
    if len(steps) >= 3:
        kw = {"n_items": cfg.n_items, "burstiness": cfg.burstiness, "n_labels": cfg.n_labels}
        fits["whole_run"] = fit_nested_logits(steps, curve["icl_loss"], icl_acc=curve["icl_acc"], **kw)
        t = trans.get("icl_acc")
        if t and sum(s <= t["start"] for s in steps) >= 3:
            fits["plateau_only"] = fit_nested_logits(steps, curve["icl_loss"], icl_acc=curve["icl_acc"],
                                                     fit_until=t["start"], **kw)
    result["nested_logit_fit"] = fits
    return result
