"""Forgetting schedules (Chen et al. 2023 active forgetting; Anand et al. 2024 temporary forgetting)
and the part-of-speech forgetting experiment.

Schedules plug into the training loop's schedule interface (`toy_models.train`,
`toy_models.schedules.EveryK`):

- "none": nothing is reset;
- "active": the token embeddings are re-initialised every k steps for the whole run;
- "temporary": every k steps until step T, then never again.

`reset_optimizer_state` also clears the optimiser's per-parameter state (Adam moments) of the
re-initialised parameters. The names default to the token embedding (`embed.W_E`) of a
token-input model, or the read-in (`read_in.W_in`) of a continuous-input one such as the
classification network, so the same schedules apply to both tasks.

`run_pos_forgetting` trains a small transformer on the POS task (`toy_models.tasks.pos`) under a
schedule and tracks accuracy on every eval set (`POS_CURVES`); the held-out words get fresh embeddings at
each evaluation, once at the initialisation scale (as never-trained rows are) and once drawn like the
trained words (no identity, so only the sentence structure can classify them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from probes.errors import IclensError
from toy_models.checkpoint import load_checkpoint, read_config
from toy_models.models import ToyConfig, ToyTransformer
from toy_models.schedules import EveryK
from toy_models.tasks.pos import (POS_EVAL_KINDS, POSITION_PRIOR_ACCURACY, SEQ_LEN, POSConfig, POSTask,
                                  fresh_embeddings, pos_accuracy)
from toy_models.train import Schedule, TrainConfig, TrainResult, train

SCHEDULES = ("none", "active", "temporary")
VERDICTS = ("transient", "persistent", "dual_process")  # forgetting_summary's verdicts
POS_CURVES = (*POS_EVAL_KINDS, "heldout_like")  # what every POS evaluation records


def average_evals(evals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The parameter average's evaluations (the `ema_<key>` entries of a run with `ema_decay`), keyed like the live
    model's; [] for a run that keeps no average."""
    return [{"step": e["step"], **{k[4:]: v for k, v in e.items() if k.startswith("ema_")}}
            for e in evals if any(k.startswith("ema_") for k in e)]


def average_kinds(runs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The eval sets worth comparing live against averaged (switched, held-out, ambiguous words) that every given run
    recorded for its parameter average."""
    have = recorded_curves(*(average_evals(evals) for evals in runs.values()))
    return [k for k in ("switched", "heldout", "ambiguous") if k in have]


def recorded_curves(*runs_evals: list[dict[str, Any]]) -> list[str]:
    """The POS_CURVES every given run recorded (runs from before "heldout_like" or "ambiguous" lack them, and so do
    vocabularies without ambiguous words), in POS_CURVES order."""
    return [k for k in POS_CURVES if all(k in evals[0] for evals in runs_evals if evals)]


@dataclass(kw_only=True)
class ForgettingConfig:
    """Which schedule, its period k, the stop step `until` (temporary only), what is reset and how.

    std: scale of the fresh N(0, std) draws; 0 re-initialises as the model was initialised (its embed_std
    for a token embedding, its init_std otherwise).
    """

    schedule: str = "none"
    k: int = 1000
    until: int = 0
    reset_optimizer_state: bool = False
    names: tuple[str, ...] = ()
    std: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise IclensError(f"unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}.")
        if self.k < 1:
            raise IclensError(f"forgetting period k must be >= 1 (got {self.k}).")
        if self.schedule == "temporary" and self.until <= self.k:
            raise IclensError(f"temporary forgetting needs --until T > k (got T={self.until}, k={self.k}).")
        if self.std < 0:
            raise IclensError(f"re-initialisation std must be >= 0 (got {self.std}; 0 = the model's init scale).")
        self.names = tuple(self.names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reset_steps(self, total: int) -> list[int]:
        """The steps at which the schedule resets, for a run of `total` steps (the definition tests check)."""
        if self.schedule == "none":
            return []
        stop = total if self.schedule == "active" else min(total, self.until)
        return list(range(self.k, stop, self.k))


def embedding_names(model: nn.Module) -> list[str]:
    """The token-embedding parameter of a toy model: embed.W_E (token ids) or read_in.W_in (continuous)."""
    params = dict(model.named_parameters())
    for name in ("embed.W_E", "read_in.W_in"):
        if name in params:
            return [name]
    raise IclensError("the model has neither embed.W_E nor read_in.W_in: pass the parameter names to reset.")


def make_schedule(cfg: ForgettingConfig, model: nn.Module) -> Schedule | None:
    """The training-loop schedule for `cfg` (None for "none")."""
    if cfg.schedule == "none":
        return None
    names = list(cfg.names) or embedding_names(model)
    until = cfg.until if cfg.schedule == "temporary" else None
    std = cfg.std or init_scale(model, names[0])
    return EveryK(names, cfg.k, until=until, seed=cfg.seed, std=std, reset_optimizer_state=cfg.reset_optimizer_state)


def init_scale(model: nn.Module, name: str) -> float:
    """The N(0, std) scale a toy model drew parameter `name` from at initialisation (0.02 for other models)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "init_std"):
        return 0.02
    return cfg.embed_std if name == "embed.W_E" else cfg.init_std


# -- the POS forgetting experiment -----------------------------------------------------------------
@dataclass(kw_only=True)
class POSRunConfig:
    """CPU preset: 2000 words (Zipf 1.5, 10 % ambiguous, 10 % of training queries absent from their context), 2 layers x
    4 heads, d_model 64, token embeddings drawn at std 0.1 (positions and other weights at 0.02), AdamW lr 1e-3,
    batch 128, 8000 steps (3-4 min on one core) at a constant learning rate. Temporary forgetting in the README stops
    at step 3000. `lr_schedule="cosine"` decays the rate to 0 over the run instead: the structural strategy then
    settles rather than fading (README). `ema_decay` > 0 also evaluates an exponential moving average of the weights
    (`ema_<set>` curves; `toy_models.train`), the centre the constant-rate weights jitter around.

    Two pressures decide which strategy a word ends up with. Ambiguous words (their role is only in the context) keep
    the in-context strategy alive; absent queries (only the weights can answer) make knowing a word worth something
    even once the in-context strategy is perfect, and they come in proportion to a word's frequency. With 5 % of each
    the dual process after temporary forgetting held in 1 of 4 seeds (rare words split between the strategies in the
    others); with 10 % of each it held in every seed tried (README).

    The embedding scale matters: at 0.02 a fresh token weighs no more than its position after the pre-LN, and
    the structural strategy never formed (held-out accuracy <= 0.7 under every schedule); at 0.1 active
    forgetting drives it to 0.99.
    """

    n_words: int = 2000
    n_heldout: int = 100
    zipf_alpha: float = 1.5
    p_ambiguous: float = 0.1
    p_absent: float = 0.1
    n_layers: int = 2
    n_heads: int = 4
    d_model: int = 64
    embed_std: float = 0.1
    steps: int = 8000
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    ema_decay: float = 0.0
    eval_every: int = 0
    eval_size: int = 1000
    checkpoint_every: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or self.eval_size < 16 or not self.embed_std > 0:
            raise IclensError("steps, batch_size >= 1, lr > 0, embed_std > 0 and eval_size >= 16 are required.")
        if self.eval_every == 0:
            self.eval_every = max(1, self.steps // 40)
        self.task_config()
        self.train_config()  # checks the optimisation settings (e.g. the lr schedule) before anything is written

    def task_config(self) -> POSConfig:
        return POSConfig(n_words=self.n_words, n_heldout=self.n_heldout, zipf_alpha=self.zipf_alpha,
                         p_ambiguous=self.p_ambiguous, p_absent=self.p_absent)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, lr_schedule=self.lr_schedule,
                           ema_decay=self.ema_decay, eval_every=self.eval_every,
                           checkpoint_every=self.checkpoint_every, seed=self.seed)

    def model_config(self) -> ToyConfig:
        return ToyConfig(n_layers=self.n_layers, n_heads=self.n_heads, d_model=self.d_model, n_ctx=SEQ_LEN,
                         d_vocab=self.task_config().d_vocab, d_out=2, embed_std=self.embed_std)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


HELDOUT_DRAWS = 8  # fresh embedding draws averaged per held-out evaluation


def make_pos_eval_fn(task: POSTask, size: int, *, std: float, seed: int = 4321, draws: int = HELDOUT_DRAWS):
    """eval_fn(model, step): accuracy on every POS eval set, the held-out words measured twice, each the mean over
    `draws` fresh draws of their embeddings (one draw of 100 random rows moves the accuracy by several points).

    "heldout": the held-out rows as never-trained rows are, i.i.d. N(0, std) draws at the initialisation
    scale (the paper's test: it degrades as trained embeddings drift away from the initial distribution).
    "heldout_like": the held-out rows drawn from the Gaussian of the current training-word embeddings
    (`fresh_embeddings(like=...)`): words in scale and shape without identity, a test of the structural
    strategy alone. A model trained purely in context scores 0.99 on "heldout_like" but 0.73 on "heldout"
    (init-scale rows have about half a trained word's norm), so the gap between the two is the drift.
    """
    sets = {k: task.eval_batch(k, size, seed=seed + i) for i, k in enumerate(POS_EVAL_KINDS) if k in task.eval_kinds}
    heldout = range(task.cfg.n_words, task.cfg.n_words + task.cfg.n_heldout)

    def eval_fn(model, step: int) -> dict[str, float]:
        out = {k: pos_accuracy(task, model, b) for k, b in sets.items() if k != "heldout"}
        for name, kw in (("heldout", {"std": std}), ("heldout_like", {"like": range(task.cfg.n_words)})):
            accs = []
            for j in range(draws):
                with fresh_embeddings(model, heldout, seed=seed + step + 1_000_003 * j, **kw):
                    accs.append(pos_accuracy(task, model, sets["heldout"]))
            out[name] = sum(accs) / draws
        return out

    return eval_fn


def run_pos_forgetting(cfg: POSRunConfig, fcfg: ForgettingConfig, out: str | Path | None, *, resume: bool = False,
                       device: str = "cpu", progress: bool = True) -> tuple[ToyTransformer, POSTask, TrainResult]:
    """Train on the POS task under a forgetting schedule; evals hold every eval set's accuracy."""
    task = POSTask(cfg.task_config())
    model = ToyTransformer(cfg.model_config(), seed=cfg.seed).to(device)
    tcfg = cfg.train_config()
    run_config = {"experiment": "pos-forgetting", "run": cfg.to_dict(), "forgetting": fcfg.to_dict()}
    res = train(model, task, tcfg, run_dir=out, run_config=run_config, resume=resume,
                schedule=make_schedule(fcfg, model), progress=progress, device=device,
                eval_fn=make_pos_eval_fn(task, cfg.eval_size, std=model.cfg.embed_std, seed=20_000 + cfg.seed))
    return model, task, res


def load_pos_run(run_dir: str | Path, *, device: str = "cpu") -> tuple[ToyTransformer, POSTask, POSRunConfig,
                                                                        ForgettingConfig]:
    conf = read_config(Path(run_dir))
    if conf.get("experiment") != "pos-forgetting":
        raise IclensError(f"{run_dir} is not a pos-forgetting run folder.")
    cfg, fcfg = POSRunConfig(**conf["run"]), ForgettingConfig(**conf["forgetting"])
    model = ToyTransformer(cfg.model_config()).to(device)
    load_checkpoint(Path(run_dir), model, None, None, restore_rngs=False)
    return model.eval(), POSTask(cfg.task_config()), cfg, fcfg


def _levels(ys: list[float]) -> tuple[float, int, float]:
    """(peak, index of the peak, final level) of a noisy eval curve: the peak of its 3-point moving average and the
    mean of its last tenth, so one lucky or unlucky evaluation decides no verdict (curves under 9 points: raw)."""
    if len(ys) < 9:
        return max(ys), ys.index(max(ys)), ys[-1]
    windows = [ys[max(0, i - 1):i + 2] for i in range(len(ys))]
    smooth = [sum(w) / len(w) for w in windows]
    i = max(range(len(ys)), key=smooth.__getitem__)
    tail = ys[-max(1, len(ys) // 10):]
    return smooth[i], i, sum(tail) / len(tail)


def structural_share(acc: float) -> float:
    """Held-out accuracy as the share of the way from the position prior (0.7: no structure) to 1 (full structure)."""
    return (acc - POSITION_PRIOR_ACCURACY) / (1 - POSITION_PRIOR_ACCURACY)


def forgetting_summary(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak, final and peak-to-final drop of every eval curve, and the verdicts the papers predict.

    Peak and final are smoothed levels (`_levels`: 3-point moving average, mean of the last tenth of the run).
    Held-out accuracy is judged above its floor: a model that ignores where the query occurred and guesses the
    majority role given the copula's position scores 0.7 (`POSITION_PRIOR_ACCURACY`), not 0.5; `structural_share`
    rescales 0.7..1 to 0..1.
    transient: the structural share peaks at 0.3 or more (held-out >= 0.79) and ends at no more than half its peak;
    persistent: held-out accuracy ends within 0.05 of its peak and above 0.75;
    dual_process: held-out and tail-switched accuracy end above 0.75 while frequent switched words end below 0.5
    (the model answers frequent words from its weights and rare or unseen ones from the context).
    "ema": the same summary of the parameter average's curves, in runs that keep one (`average_evals`).
    """
    if not evals:
        return {}
    out: dict[str, Any] = {}
    for k in POS_CURVES:
        pts = [(e["step"], e[k]) for e in evals if k in e]
        if pts:
            peak, i, final = _levels([y for _, y in pts])
            out[k] = {"peak": peak, "peak_step": pts[i][0], "final": final, "drop": peak - final}
    h = out.get("heldout")
    if h:
        peak, final = structural_share(h["peak"]), structural_share(h["final"])
        out["transient"] = bool(peak >= 0.3 and final <= peak / 2)
        out["persistent"] = bool(h["final"] > 0.75 and h["drop"] <= 0.05)
        st, sw = out.get("switched_tail"), out.get("switched")
        out["dual_process"] = bool(st and sw and h["final"] > 0.75 and st["final"] > 0.75 and sw["final"] < 0.5)
    average = average_evals(evals)
    if average:
        out["ema"] = forgetting_summary(average)
    return out
