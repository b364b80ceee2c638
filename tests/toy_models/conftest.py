"""Toy-model tests run their small torch ops on one thread: on a shared, loaded 2-core box a second
intra-op thread only spins (measured: a 300-step LSA run took 90 s with 2 threads under load)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
