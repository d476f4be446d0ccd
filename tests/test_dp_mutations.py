"""The listed mutations of the DP mechanism (tests/dp_mutations.py) apply to today's source, and each is killed.

The applicability check is instant and catches a mutation whose string moved; the slow test runs the
whole check (about a minute: each mutation against the tests that kill it, on a copy of the package).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("dp_mutations.py")


def _load():
    spec = importlib.util.spec_from_file_location("dp_mutations", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("dp_mutations", mod)
    spec.loader.exec_module(mod)
    return mod


def test_every_listed_mutation_applies_and_names_its_killers():
    dm = _load()
    assert dm.check_all(dm.MUTATIONS) == []
    names = [m.name for m in dm.MUTATIONS]
    assert len(set(names)) == len(names)
    for m in dm.MUTATIONS:
        assert m.killers and all(k.split("::")[0] in dm.FULL_TESTS for k in m.killers), m.name


def test_mutate_refuses_a_missing_or_ambiguous_string():
    dm = _load()
    m = dm.Mutation("x", "f.py", "a = 1", "a = 2", ("t",))
    assert dm.mutate("a = 1\n", m) == "a = 2\n"
    for text in ("b = 1\n", "a = 1\na = 1\n", "a = 1\na = 2\n"):
        with pytest.raises(dm.MutationError, match="exactly one occurrence"):
            dm.mutate(text, m)


@pytest.mark.slow
def test_every_listed_mutation_is_killed():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=SCRIPT.parent.parent, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
