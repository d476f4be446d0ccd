"""Shared test set-up: results and cache go to temporary folders, never the repository's."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path_factory, monkeypatch):
    """Point RELINK_RESULTS and RELINK_CACHE at a per-test temporary folder."""
    base = tmp_path_factory.mktemp("relink")
    monkeypatch.setenv("RELINK_RESULTS", str(base / "results"))
    monkeypatch.setenv("RELINK_CACHE", str(base / "cache"))
    yield


def pytest_configure(config):
    os.environ.setdefault("MPLBACKEND", "Agg")
