"""The residual-stream patching experiment of `circuits.patching`, written with nnsight.

nnsight (Fiotto-Kaufman et al. 2024, "NNsight and NDIF") wraps an unmodified
Hugging Face model and records interventions inside a ``with model.trace(...)``
block. This module patches the output of each decoder layer (the residual stream
after layer l, TransformerLens' ``blocks.l.hook_resid_post``) at each position from
the clean run into the corrupted run, scores the same normalised logit
difference, and so gives a check, independent of TransformerLens' hook machinery,
of `activation_patch(model, task, resid_sweep(model, n_pos, "resid_post"))`.

When to use which:

- `circuits.patching` on a TransformerBridge / HookedRootModule: every hook name of
  the TransformerLens vocabulary (per-head z, patterns, q/k/v), batched variants
  (many patches in one forward pass), toy models, attribution patching.
- nnsight: any module of any PyTorch / HF model as it was written, without a
  bridge or hook names; remote execution on NDIF for models too big to hold.
  Note: nnsight re-reads the traced block's source, so a trace must live in a
  file (a module or notebook cell), not code piped through stdin.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from circuits.metrics import NormalisedLogitDiff, logit_diff
from circuits.tasks import PatchTask
from probes.errors import IclensError


def _layers(lm):
    """The envoy list of decoder layers of a wrapped HF causal LM (Llama/Gemma/Mistral or GPT-2 layout)."""
    for path in (("model", "layers"), ("transformer", "h"), ("model", "decoder", "layers")):
        obj = lm
        try:
            for p in path:
                obj = getattr(obj, p)
            return obj
        except AttributeError:
            continue
    raise IclensError("cannot find the decoder layers of this model (looked for model.layers and transformer.h).")


def _last_logits(lm, tokens: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode(), lm.trace(tokens):
        out = lm.output.logits[:, -1].save()
    return out


def nnsight_resid_patch(hf_model, task: PatchTask, *, progress: bool = False) -> np.ndarray:
    """[layer, pos] normalised metric with the residual after layer l at one position patched clean -> corrupted.

    `hf_model`: a plain Hugging Face causal LM (e.g. ``probes.models.load_hf(name)[0]``),
    holding the same weights as the bridge the other methods run on.
    """
    from nnsight import NNsight

    lm = NNsight(hf_model)
    layers = _layers(lm)
    n_layers = len(layers)
    with torch.inference_mode(), lm.trace(task.clean):
        clean = list().save()
        for layer in layers:
            out = layer.output
            clean.append(out[0] if isinstance(out, tuple) else out)
    clean_ld = float(logit_diff(_last_logits(lm, task.clean), task.answer, task.wrong).mean())
    corr_ld = float(logit_diff(_last_logits(lm, task.corrupted), task.answer, task.wrong).mean())
    metric = NormalisedLogitDiff(clean_ld, corr_ld)
    scores = np.zeros((n_layers, task.n_pos))
    for li in tqdm(range(n_layers), disable=not progress, desc="nnsight resid patching"):
        for pos in range(task.n_pos):
            with torch.inference_mode(), lm.trace(task.corrupted):
                out = layers[li].output
                hidden = out[0] if isinstance(out, tuple) else out
                hidden[:, pos] = clean[li][:, pos]
                logits = lm.output.logits[:, -1].save()
            scores[li, pos] = float(metric(logits, task.answer, task.wrong))
    return scores
