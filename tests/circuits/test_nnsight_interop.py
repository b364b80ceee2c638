"""nnsight on the plain HF model gives the same residual patching numbers as the hooked bridge."""

from __future__ import annotations

import numpy as np
import pytest

from circuits.patching import activation_patch, resid_sweep
from circuits.tasks import make_task
from probes.models import load_hf

pytest.importorskip("nnsight")


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2"])
def test_nnsight_resid_patching_matches_bridge(name, tiny_model, tiny_gpt2):
    from circuits.nnsight_interop import nnsight_resid_patch

    bridge = tiny_model if name == "tiny-llama" else tiny_gpt2
    task = make_task(bridge, "ioi", n=4)
    hf, _ = load_hf(name)  # same seed, same weights; untouched by the bridge
    ours = activation_patch(bridge, task, resid_sweep(bridge, task.n_pos, "resid_post")).values
    theirs = nnsight_resid_patch(hf.eval(), task)
    assert np.abs(ours).max() > 0.5  # a real signal, not two arrays of zeros
    np.testing.assert_allclose(theirs, ours, atol=1e-3)
