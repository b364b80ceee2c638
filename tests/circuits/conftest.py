"""Fixtures for tests/circuits: the hand-built model with a known circuit (see circuits_testkit)."""

from __future__ import annotations

import pytest
from circuits_testkit import HandBuilt, handbuilt_task


@pytest.fixture(scope="session")
def handbuilt():
    return HandBuilt().eval()


@pytest.fixture()
def hb_task():
    return handbuilt_task()
