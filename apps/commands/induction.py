"""`iclens probe induction` and `iclens models`."""

from __future__ import annotations

from pathlib import Path

import typer
from tqdm import tqdm

from apps.cli_base import DEVICE_OPT, SEED_OPT, app, prepare_out, probe_app, seed_everything
from apps.figures.induction import report_sections
from apps.report import json_block, Section, write_report


@app.command("models")
def models_cmd() -> None:
    """List the models iclens can load and whether each is cached."""
    from probes.models import available_models, cache_root

    typer.echo(f"cache: {cache_root()}")
    for row in available_models():
        state = "cached" if row["cached"] else ("not converted yet" if row["installed"] else "package not installed")
        typer.echo(f"{row['name']:<16} {row['kind']:<9} {state:<22} {row['description']}")
    typer.echo("also: any local folder with config.json, or a Hugging Face id (needs the network or a local HF cache)")


@probe_app.command("induction")
def induction_cmd(
    model: str = typer.Option("gemma-3-270m", "--model", help="Embedded name, tiny-*, folder or Hugging Face id."),
    out: Path = typer.Option(Path("out/induction"), "--out", help="Folder for result.json and report.html."),
    seed: int = SEED_OPT,
    device: str = DEVICE_OPT,
    n_prompts: int = typer.Option(16, "--n-prompts", help="Number of random prompts."),
    seq_len: int = typer.Option(64, "--seq-len", help="Length of the repeated random sequence (prompt = 2x + BOS)."),
    ngram: list[int] = typer.Option([2, 3, 4], "--ngram", help="n-gram orders to score (repeatable)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Prompts per forward pass."),
    text: str | None = typer.Option(None, "--text", help="Also score ICL on natural text: a file, folder or hf:NAME."),
    text_contexts: int = typer.Option(8, "--text-contexts", help="Natural-text contexts to read."),
    text_late: int = typer.Option(500, "--text-late", help="'Late' position of the natural-text ICL score (early: 50)."),
) -> None:
    """Find induction, previous-token, duplicate and n-gram heads; write result.json + report.html."""
    from probes.icl_score import natural_text_icl
    from probes.induction import ScanConfig, scan
    from probes.models import load_model

    config = ScanConfig(n_prompts=n_prompts, seq_len=seq_len, seed=seed, ngram_orders=tuple(ngram), batch_size=batch_size)
    if text:  # validate the corpus path before any slow work
        from probes.corpus import CorpusConfig

        CorpusConfig(source=text, seq_len=text_late + 11)
    out = prepare_out(out)
    seed_everything(seed)
    typer.echo(f"loading {model} ...", err=True)
    m = load_model(model, device=device)
    with tqdm(total=100, desc="induction scan", unit="%", leave=False) as bar:
        def progress(frac: float, msg: str) -> None:
            bar.set_postfix_str(msg)
            bar.update(round(frac * 100) - bar.n)

        res = scan(m, config=config, progress=progress)
    if text:
        res.natural_text = natural_text_icl(m, text, n_contexts=text_contexts, early=min(50, text_late // 10),
                                            late=text_late)
    res.save(out / "result.json")
    facts = {"model": res.model, "layers x heads": f"{res.n_layers} x {res.n_heads}", "seed": seed,
             "prompts": f"{n_prompts} x (2 x {seq_len}) tokens", "ICL score": f"{res.icl_score:.3f}",
             "top induction heads": ", ".join(f"L{L}.H{H}" for L, H, _ in res.top("induction", 5))}
    sections = report_sections(res) + [Section("Config and versions", "", [json_block({"config": res.config, "versions": res.versions})])]
    write_report(out / "report.html", f"Induction and n-gram heads: {res.model}", sections, facts)
    typer.echo(f"top induction heads: {res.top('induction', 5)}")
    typer.echo(f"wrote {out / 'result.json'} and {out / 'report.html'}")
