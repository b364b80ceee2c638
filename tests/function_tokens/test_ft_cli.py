"""`iclens probe function-tokens`: result.json + report.html, resumes from its caches, bad input exits 2."""

from __future__ import annotations

import json

import pytest

from apps.cli import main

ARGS = ["--model", "tiny-llama", "--layer", "1", "--max-tokens", "1024", "--seq-len", "32", "--expansion", "2",
        "--k", "4", "--epochs", "1", "--loss-tokens", "512", "--positions", "4", "--device", "cpu"]


def test_cli_writes_result_and_report_then_resumes(small_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    main(["probe", "function-tokens", "--corpus", str(small_corpus), "--out", str(out), *ARGS])
    res = json.loads((out / "result.json").read_text())
    assert (out / "report.html").stat().st_size > 10_000
    h = res["headline"]
    assert 0 <= h["top10_tokens_alive_feature_fraction"] <= 1 and h["alive"] + h["dead"] == 64
    assert res["n_tokens"] == 1024 and res["graph"]["n_occurrences"] == 32 * 31
    assert set(res["transitions"]["count"]) == {"function->function", "function->content", "content->function", "content->content"}
    assert res["retrieval"]["groups"]["function"]["n"] == 4
    for f in res["retrieval"]["top_features"]:  # each top feature's linked tokens come from the graph
        assert f["n_tokens_linked"] >= len(f["fires_on"]) >= 1
    shard = out / "activations" / "shard_00000.safetensors"
    sae = out / "sae" / "sae.safetensors"
    stamps = (shard.stat().st_mtime_ns, sae.stat().st_mtime_ns)
    capsys.readouterr()
    main(["probe", "function-tokens", "--corpus", str(small_corpus), "--out", str(out), *ARGS])
    assert "reusing the trained SAE" in capsys.readouterr().err
    assert (shard.stat().st_mtime_ns, sae.stat().st_mtime_ns) == stamps
    assert json.loads((out / "result.json").read_text())["headline"] == h


@pytest.mark.parametrize("change,match", [
    (["--corpus", "/nonexistent/corpus.txt"], "does not exist"),
    (["--layer", "7"], "out of range"),
    (["--sae-kind", "gated"], "SAE kind"),
])
def test_bad_input_exits_2_and_keeps_files(small_corpus, tmp_path, capsys, change, match):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier result")
    args = ["probe", "function-tokens", "--corpus", str(small_corpus), "--out", str(out), *ARGS]
    for i in range(0, len(change), 2):
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i:i + 2]
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and match in errors[0]
    assert (out / "keep.txt").read_text() == "earlier result"


def test_toy_lm_learns_a_periodic_corpus_and_logs_transitions(tiny_model):
    import math

    import torch

    from apps.commands.function_tokens import toy_lm_transitions
    from probes.function_tokens import function_token_mask

    tok = tiny_model.tokenizer
    cycle = tok.convert_tokens_to_ids("the cat saw a dog .".split())
    toks = torch.tensor([[cycle[(i + s) % 6] for i in range(24)] for s in range(40)])
    log = toy_lm_transitions(toks, function_token_mask(tok), steps=60, evals=3, n_eval=8, seq_len=24, progress=False)
    assert log["vocab"] == 6 and log["step"][0] == 0 and log["step"][-1] == 60
    assert log["mean_loss_all"][0] == pytest.approx(math.log(6), abs=0.3)  # untrained: about uniform over 6 tokens
    assert log["mean_loss_all"][-1] < 0.2  # the cycle is deterministic
    shares = [log["loss_share"][t][-1] for t in log["loss_share"]]
    assert sum(shares) == pytest.approx(1.0)
