"""Shared test set-up: unit tests write results and cache to temporary folders, never the repository's.

nbval cells (the ci-profile notebooks) are left alone: they share ``cache/ci`` and
``results/ci`` with ``make book PROFILE=ci``, so the book build after the tests reuses their steps.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_outputs(request, tmp_path_factory, monkeypatch):
    """Point RELINK_RESULTS and RELINK_CACHE at a per-test temporary folder (unit tests only)."""
    if type(request.node).__name__ == "IPyNbCell":
        yield
        return
    base = tmp_path_factory.mktemp("relink")
    monkeypatch.setenv("RELINK_RESULTS", str(base / "results"))
    monkeypatch.setenv("RELINK_CACHE", str(base / "cache"))
    yield


@pytest.fixture()
def one_torch_thread():
    """One torch intra-op thread for the test (tiny models and matrices are overhead-bound, and a shared CPU is
    not oversubscribed); the thread count is restored after it. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
