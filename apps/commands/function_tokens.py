"""`iclens probe function-tokens`: SAE features, token-feature graph, retrieval and loss by transition.

Stages, each cached under ``--out`` so a killed or repeated run picks up where it stopped:

1. activations of ``blocks.L.hook_resid_pre`` -> ``OUT/activations/shard_*.safetensors`` (resumes
   from the last whole shard);
2. SAE -> ``OUT/sae/`` (reused when its config and training data match);
3. SAE spliced-in loss, per-token losses, memory-retrieval ablations and (``--toy-steps``) a toy
   language model trained from scratch on the same windows, its loss by transition logged over
   training -> ``OUT/stages/*.json`` (reused when their settings match);
4. graph statistics (recomputed: cheap), ``result.json`` and ``report.html``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import typer

from apps.cli_base import DEVICE_OPT, SEED_OPT, prepare_out, probe_app, seed_everything
from apps.figures.function_tokens import report_sections
from apps.report import Section, json_block, write_report
from probes.errors import IclensError
from probes.results import to_jsonable, versions, write_json


@dataclass(frozen=True, kw_only=True)
class FunctionTokensConfig:
    """Everything that decides a function-token run (saved in result.json)."""

    model: str
    corpus: str
    layer: int
    max_tokens: int = 100_000
    seq_len: int = 128
    batch_size: int = 8
    expansion: int = 8
    sae_kind: str = "topk"
    k: int = 32
    l1_coeff: float = 3.0
    epochs: int = 4
    lr: float = 1e-3
    threshold: float = 0.0
    loss_tokens: int = 16_384
    splice_sequences: int = 16
    n_positions: int = 48
    top_m: int = 5
    toy_steps: int = 0
    seed: int = 0

    def __post_init__(self):
        if self.layer < 0:
            raise IclensError(f"--layer must be >= 0 (got {self.layer}).")
        if min(self.loss_tokens, self.splice_sequences, self.threshold, self.toy_steps) < 0:
            raise IclensError("--loss-tokens, --splice-sequences, --threshold and --toy-steps must be >= 0.")
        if self.max_tokens < self.seq_len:
            raise IclensError(f"--max-tokens {self.max_tokens} is below one sequence ({self.seq_len} tokens): raise it.")


def _stage(path: Path, key: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """Return the JSON saved at `path` when it was made with the same `key`, else compute and save."""
    key = to_jsonable(key)
    if path.exists():
        try:
            saved = json.loads(path.read_text())
            if saved.get("key") == key:
                return saved["value"]
        except ValueError:
            pass
    value = to_jsonable(compute())
    write_json(path, {"key": key, "value": value})
    return value


class CorpusLMTask:
    """Next-token prediction on fixed token windows (a `toy_models.train` task; ids already dense)."""

    task_name = "corpus-lm"

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens

    def sample(self, batch_size: int, generator: torch.Generator, *, step: int = 0) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[torch.randint(len(self.tokens), (batch_size,), generator=generator)]}

    def loss(self, model, batch) -> torch.Tensor:
        logits = model(batch["tokens"])
        return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), batch["tokens"][:, 1:].flatten())

    def config_dict(self) -> dict[str, Any]:
        return {"task": self.task_name, "n_sequences": len(self.tokens), "seq_len": self.tokens.shape[1]}


def toy_lm_transitions(tokens: torch.Tensor, function_mask: torch.Tensor, *, steps: int, seed: int = 0,
                       n_eval: int = 16, evals: int = 10, seq_len: int = 64, progress: bool = True) -> dict[str, Any]:
    """Train a 2-layer toy transformer from scratch on `tokens` (the same corpus windows) and log the
    transition statistics of its per-token loss on held-out windows over training.

    Token ids are remapped to the corpus's own dense vocabulary (Gemma's 262k ids would make the
    read-out most of the model); the function mask is remapped with them.
    """
    from probes.transitions import TRANSITIONS, transition_stats
    from toy_models.models import ToyConfig, ToyTransformer
    from toy_models.train import TrainConfig, train

    tokens = tokens[:, :seq_len]
    if len(tokens) <= n_eval:
        raise IclensError(f"the toy LM needs more than {n_eval} cached sequences: raise --max-tokens.")
    vocab, dense = torch.unique(tokens, return_inverse=True)
    fmask = function_mask[vocab]
    train_toks, eval_toks = dense[:-n_eval], dense[-n_eval:]
    model = ToyTransformer(ToyConfig(n_layers=2, n_heads=4, d_model=64, n_ctx=seq_len, d_vocab=len(vocab),
                                     d_out=len(vocab)), seed=seed)
    log: dict[str, Any] = {"step": [], "mean_loss_all": [], "mean_loss": {t: [] for t in TRANSITIONS},
                           "loss_share": {t: [] for t in TRANSITIONS}}

    def eval_fn(m, step):
        with torch.no_grad():
            logits = m(eval_toks)
            losses = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), eval_toks[:, 1:], reduction="none")
        st = transition_stats(eval_toks, losses, fmask)
        log["step"].append(step)
        log["mean_loss_all"].append(st.mean_loss_all)
        for t in TRANSITIONS:
            log["mean_loss"][t].append(st.mean_loss[t])
            log["loss_share"][t].append(st.loss_share[t])
        return {"loss": st.mean_loss_all}

    eval_fn(model, 0)
    res = train(model, CorpusLMTask(train_toks), TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_steps=steps // 10,
                                                             lr_schedule="cosine", eval_every=max(1, steps // evals), seed=seed),
                eval_fn=eval_fn, progress=progress)
    return {"vocab": len(vocab), "seq_len": seq_len, "steps": steps, "train_loss_last": res.losses[-1], **log}


def run_function_tokens(cfg: FunctionTokensConfig, out: Path, *, device: str = "auto", model=None,
                        progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) every stage; write result.json + report.html in `out`; return the result dict."""
    from probes.activations import ActivationConfig, activation_mean, collect_activations
    from probes.corpus import CorpusConfig
    from probes.feature_graph import build_graph, graph_stats, sae_batches
    from probes.function_tokens import function_token_mask, token_categories
    from probes.memory_retrieval import RetrievalConfig, memory_retrieval
    from probes.models import load_model
    from probes.sae import SAEConfig, evaluate_sae, load_sae, save_sae, spliced_loss, train_sae
    from probes.transitions import per_token_loss, transition_stats

    corpus = CorpusConfig(source=cfg.corpus, seq_len=cfg.seq_len, max_tokens=cfg.max_tokens)
    if model is None:
        echo(f"loading {cfg.model} ...")
        model = load_model(cfg.model, device=device)
    if cfg.layer >= model.cfg.n_layers:
        raise IclensError(f"--layer {cfg.layer} is out of range: {cfg.model} has layers 0..{model.cfg.n_layers - 1}.")
    seed_everything(cfg.seed)
    acts_cfg = ActivationConfig(layer=cfg.layer, batch_size=cfg.batch_size, shard_sequences=cfg.batch_size * 8)
    store = collect_activations(model, corpus, out / "activations", acts_cfg, progress=progress)
    n_seq = min(store.n_sequences, corpus.max_sequences or store.n_sequences)

    sae_cfg = SAEConfig(d_in=store.d_model, expansion=cfg.expansion, kind=cfg.sae_kind, k=cfg.k, l1_coeff=cfg.l1_coeff,
                        epochs=cfg.epochs, lr=cfg.lr, seed=cfg.seed)
    sae = None
    if (out / "sae" / "sae.json").exists():
        sae, info = load_sae(out / "sae")
        if info["config"] != asdict(sae_cfg) or info.get("n_sequences") != n_seq:
            sae = None
        else:
            echo("reusing the trained SAE in OUT/sae")
            log = info["log"]
    if sae is None:
        sae, train_log = train_sae(store, sae_cfg, progress=progress, max_sequences=n_seq)
        log = to_jsonable(train_log)
        save_sae(sae, out / "sae", {"n_sequences": n_seq, "log": log})
    stats = evaluate_sae(sae, store, max_sequences=n_seq)
    mean_act = activation_mean(store, max_sequences=n_seq)

    stage_key = {"model": cfg.model, "layer": cfg.layer, "n_seq": n_seq, "sae": asdict(sae_cfg), "corpus": store.meta["fingerprint"]}
    splice_toks = store.sequences(min(cfg.splice_sequences, n_seq))
    echo("loss with the SAE spliced in ...")
    loss = _stage(out / "stages" / "splice.json", {**stage_key, "n": len(splice_toks)},
                  lambda: spliced_loss(model, sae, cfg.layer, splice_toks, skip_bos=store.has_bos, mean_act=mean_act,
                                       batch_size=max(1, cfg.batch_size // 2)))

    vocab = int(model.cfg.d_vocab)
    categories = token_categories(model.tokenizer, vocab)
    fmask = function_token_mask(model.tokenizer, vocab)

    ret_cfg = RetrievalConfig(n_positions=cfg.n_positions, top_m=cfg.top_m, batch_size=max(1, cfg.batch_size // 2), seed=cfg.seed)
    echo("memory retrieval ...")
    retrieval = _stage(out / "stages" / "retrieval.json", {**stage_key, **asdict(ret_cfg)},
                       lambda: memory_retrieval(model, sae, cfg.layer, store.sequences(min(n_seq, 4 * cfg.n_positions)),
                                                fmask, ret_cfg)) if cfg.n_positions else None

    echo("token-feature graph ...")
    track = [f["feature"] for f in retrieval["top_features"]] if retrieval else []
    graph = build_graph(sae_batches(store, sae, max_sequences=n_seq), vocab_size=vocab, threshold=cfg.threshold, track=track)
    gstats = graph_stats(graph, fmask)

    n_loss = min(n_seq, cfg.loss_tokens // cfg.seq_len)
    transitions = None
    if n_loss:
        loss_toks = store.sequences(n_loss)
        losses = _stage(out / "stages" / "losses.json", {"model": cfg.model, "n": n_loss, "corpus": store.meta["fingerprint"]},
                        lambda: per_token_loss(model, loss_toks, batch_size=max(1, cfg.batch_size // 2), progress=progress))
        transitions = transition_stats(loss_toks, torch.tensor(losses), fmask, skip_first=store.has_bos)

    if retrieval:  # what each top feature fires on, from the graph (rows are in frequency order)
        for f in retrieval["top_features"]:
            linked = graph.edges[:, f["feature"]].nonzero().flatten()
            f["n_tokens_linked"] = len(linked)
            specific = graph.most_specific_tokens(f["feature"])
            f["fires_on"] = [f"{model.tokenizer.decode([t])!r} {rate:.0%}" for t, rate in specific]

    toy = None
    if cfg.toy_steps:
        echo("toy language model from scratch ...")
        toy = _stage(out / "stages" / "toy_lm.json", {"steps": cfg.toy_steps, "n_seq": n_seq, "seed": cfg.seed,
                                                      "corpus": store.meta["fingerprint"], "model": cfg.model},
                     lambda: toy_lm_transitions(store.sequences(n_seq), fmask, steps=cfg.toy_steps, seed=cfg.seed,
                                                progress=progress))

    texts = model.tokenizer.batch_decode([[int(t)] for t in graph.token_ids])
    top10 = gstats.coverage["all"][10]
    result = {
        "model": cfg.model, "layer": cfg.layer, "hook": f"blocks.{cfg.layer}.hook_resid_pre",
        "n_tokens": n_seq * cfg.seq_len, "config": asdict(cfg), "versions": versions(),
        "headline": {"top10_tokens_alive_feature_fraction": top10,
                     "top10_function_tokens_alive_feature_fraction": gstats.coverage["function"][10],
                     "top10_content_tokens_alive_feature_fraction": gstats.coverage["content"][10],
                     "fve": stats.fve, "loss_clean": loss["clean"], "loss_spliced": loss["spliced"], "l0": stats.l0,
                     "alive": stats.n_alive, "dead": stats.n_dead},
        "sae": {"config": asdict(sae_cfg), "stats": {k: v for k, v in asdict(stats).items() if k != "firing_frequency"},
                "loss": loss, "log": log},
        "graph": gstats, "token_texts": texts, "top_token_texts": texts[:50],
        "function_token_categories": {c: sum(1 for x in categories if x == c) for c in sorted(set(categories))},
        "retrieval": retrieval, "transitions": transitions, "toy_lm": toy,
    }
    result = to_jsonable(result)
    write_json(out / "result.json", result)
    facts = {"model": cfg.model, "layer": f"{cfg.layer} (blocks.{cfg.layer}.hook_resid_pre)", "tokens": result["n_tokens"],
             "corpus": cfg.corpus, "FVE": f"{stats.fve:.3f}", "L0": f"{stats.l0:.1f}",
             "loss without / with SAE": f"{loss['clean']:.3f} / {loss['spliced']:.3f}",
             "alive features activated by the top-10 tokens": f"{top10:.1%}", "seed": cfg.seed}
    sections = report_sections(result) + [Section("Config and versions", "", [json_block({"config": result["config"],
                                                                                          "versions": result["versions"]})])]
    write_report(out / "report.html", f"Function tokens: {cfg.model}, layer {cfg.layer}", sections, facts)
    return result


@probe_app.command("function-tokens")
def function_tokens_cmd(
    model: str = typer.Option("gemma-3-270m", "--model", help="Embedded name, tiny-*, folder or Hugging Face id."),
    corpus: str = typer.Option(..., "--corpus", help="Text file, folder of .txt files, or hf:NAME[:CONFIG][@SPLIT]."),
    layer: int = typer.Option(..., "--layer", help="Read blocks.LAYER.hook_resid_pre (middle layers are the paper's focus)."),
    out: Path = typer.Option(Path("out/function_tokens"), "--out", help="Folder for caches, result.json and report.html."),
    max_tokens: int = typer.Option(100_000, "--max-tokens", help="Corpus tokens to cache and analyse."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
    seq_len: int = typer.Option(128, "--seq-len", help="Tokens per sequence (BOS included)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Sequences per forward pass."),
    expansion: int = typer.Option(8, "--expansion", help="SAE latents = expansion x d_model."),
    sae_kind: str = typer.Option("topk", "--sae-kind", help="topk or relu (ReLU + L1)."),
    k: int = typer.Option(32, "--k", help="Latents per token for a TopK SAE."),
    epochs: int = typer.Option(4, "--epochs", help="SAE passes over the cached activations."),
    threshold: float = typer.Option(0.0, "--threshold", help="A feature 'fires' on a token when its activation exceeds this."),
    loss_tokens: int = typer.Option(16_384, "--loss-tokens", help="Tokens for per-token loss by transition (0 = skip)."),
    positions: int = typer.Option(48, "--positions", help="Function / content positions for the retrieval ablation (0 = skip)."),
    top_m: int = typer.Option(5, "--top-m", help="Features ablated per position."),
    toy_steps: int = typer.Option(0, "--toy-steps", help="Also train a toy LM from scratch on the corpus for this many "
                                                        "steps and log loss by transition over training (0 = skip)."),
) -> None:
    """SAE on a middle layer, token-feature graph, memory retrieval and loss by transition; resumable."""
    cfg = FunctionTokensConfig(model=model, corpus=corpus, layer=layer, max_tokens=max_tokens, seq_len=seq_len,
                               batch_size=batch_size, expansion=expansion, sae_kind=sae_kind, k=k, epochs=epochs,
                               threshold=threshold, loss_tokens=loss_tokens, n_positions=positions, top_m=top_m,
                               toy_steps=toy_steps, seed=seed)
    from probes.corpus import CorpusConfig
    from probes.models import resolve_device
    from probes.sae import SAEConfig

    CorpusConfig(source=corpus, seq_len=seq_len, max_tokens=max_tokens)  # bad corpus fails before any work
    SAEConfig(d_in=1, expansion=expansion, kind=sae_kind, k=min(k, expansion), epochs=epochs)
    out = prepare_out(out)
    dev = resolve_device(device)
    res = run_function_tokens(cfg, out, device=str(dev), echo=lambda s: typer.echo(s, err=True))
    h = res["headline"]
    typer.echo(f"top-10 tokens activate {h['top10_tokens_alive_feature_fraction']:.1%} of alive features; "
               f"FVE {h['fve']:.3f}; loss {h['loss_clean']:.3f} -> {h['loss_spliced']:.3f} with SAE")
    typer.echo(f"wrote {out / 'result.json'} and {out / 'report.html'}")
