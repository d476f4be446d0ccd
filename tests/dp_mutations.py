"""Apply each listed one-line mutation of the DP mechanism to a copy of the package and check a test kills it.

Run from the repository root::

    .venv/bin/python tests/dp_mutations.py            # every mutation against its killing tests (about a minute)
    .venv/bin/python tests/dp_mutations.py patient    # only those whose name contains "patient"
    .venv/bin/python tests/dp_mutations.py --full     # every mutation against all of FULL_TESTS (slow)
    .venv/bin/python tests/dp_mutations.py --check    # only check that every mutation applies (no tests)

The working tree is never modified: each mutation is applied to a fresh copy of ``relink_lib`` and
``tests`` in a temporary folder (one exact string replaced; the string must occur exactly once and the
replacement not at all), and the mutation's killing tests run there, in a process forked from this one
after the heavy third-party imports (so a mutant costs its tests, not a Python start-up). First the
same tests run on an unmutated copy and must pass. Exit status: 0 when every mutation was killed; 1 when
one survived; 2 when a mutation cannot be applied, the unmutated tests fail, or a run errs otherwise
(pytest exit status other than 0 or 1). See docs/mutation.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

FULL_TESTS = [
    "tests/test_dp_train.py",
    "tests/test_dp_accounting.py",
    "tests/test_dp_fastgrad.py",
    "tests/test_summary_known_answers.py",
    "tests/test_dp_outcomes.py",
    "tests/test_dp_stage.py",
    "tests/test_dp_batched.py",
]
"""The tests ``--full`` runs against every mutation."""

_TRAIN = "tests/test_dp_train.py::"
_ACCOUNTING = "tests/test_dp_accounting.py::"
_STAGE = "tests/test_dp_stage.py::"
_BATCHED = "tests/test_dp_batched.py::test_stacked_seeds_match_sequential_runs"


class Mutation(NamedTuple):
    name: str
    file: str
    old: str
    new: str
    killers: tuple[str, ...]
    """Test ids that kill it: what the default run runs (``--full`` runs all of FULL_TESTS instead)."""


MUTATIONS: list[Mutation] = [
    Mutation(
        "fast step sums per-unit gradients without clipping",
        "relink_lib/dp/train.py",
        "max_grad_norm=config.max_grad_norm if clip else None,",
        "max_grad_norm=None,",
        (_TRAIN + "test_one_step_update_is_bounded_by_the_clipping",),
    ),
    Mutation(
        "clip coefficient always 1",
        "relink_lib/dp/train.py",
        "else:\n        coef = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)",
        "else:\n        coef = torch.ones_like(norms)",
        (_TRAIN + "test_one_step_update_is_bounded_by_the_clipping",),
    ),
    Mutation(
        "loop samples at twice the recorded rate",
        "relink_lib/dp/train.py",
        "poisson_batches(units, q, steps, sample_gen)",
        "poisson_batches(units, 2 * q, steps, sample_gen)",
        (_TRAIN + "test_empirical_batch_sizes_match_the_recorded_sample_rate[pair]",),
    ),
    Mutation(
        "sampler includes units at twice the rate",
        "relink_lib/dp/sampling.py",
        "take = torch.rand(units.n_units, generator=generator) < sample_rate",
        "take = torch.rand(units.n_units, generator=generator) < 2 * sample_rate",
        (_TRAIN + "test_empirical_batch_sizes_match_the_recorded_sample_rate[pair]",),
    ),
    Mutation(
        "patient mode clips each pair",
        "relink_lib/dp/train.py",
        'grp = groups if config.sampling == "patient" else None',
        "grp = None",
        (_TRAIN + "test_per_patient_clipping_bounds_a_whole_patient",),
    ),
    Mutation(
        "noisy sum divided by the actual batch size",
        "relink_lib/dp/train.py",
        "denom = expected_batch if clip else max(1, x_img.shape[0])",
        "denom = max(1, x_img.shape[0])",
        (_TRAIN + "test_noisy_mean_is_divided_by_the_expected_batch[100-10-seeds0]",),
    ),
    Mutation(
        "calibrate_noise skips its Opacus confirmation",
        "relink_lib/dp/calibrate.py",
        "return _confirm_with_opacus(math.exp(root), target_epsilon, rel_tol, delta, sample_rate, steps, orders)",
        "return math.exp(root)",
        (_ACCOUNTING + "test_calibration_confirms_with_opacus_and_refuses_anything_above_target[1.005]",),
    ),
    Mutation(
        "calibration accepts eps up to 1.02x the target",
        "relink_lib/dp/calibrate.py",
        "        if eps <= target:\n",
        "        if eps <= 1.02 * target:\n",
        (_ACCOUNTING + "test_calibration_confirms_with_opacus_and_refuses_anything_above_target[1.005]",),
    ),
    # survivors of the first mutmut run (docs/mutation.md), killed by later tests
    Mutation(
        "noise added only when sigma > 1",
        "relink_lib/dp/train.py",
        "if clip and sigma > 0:",
        "if clip and sigma > 1:",
        (_TRAIN + "test_noise_has_the_stated_scale[0.6]",),
    ),
    Mutation(
        "single-pair batches skipped",
        "relink_lib/dp/train.py",
        "if x_img.shape[0] > 0:",
        "if x_img.shape[0] > 1:",
        (_TRAIN + "test_noisy_mean_is_divided_by_the_expected_batch[4-1-seeds1]",),
    ),
    Mutation(
        "empty batch leaves no gradient",
        "relink_lib/dp/train.py",
        "g_img = torch.zeros_like(w_img)",
        "g_img = None",
        (_TRAIN + "test_noisy_mean_is_divided_by_the_expected_batch[4-1-seeds1]",),
    ),
    Mutation(
        "fast step drops the image bank",
        "relink_lib/dp/train.py",
        "            bank_img,\n            max_grad_norm=config.max_grad_norm if clip else None,",
        "            None,\n            max_grad_norm=config.max_grad_norm if clip else None,",
        (_TRAIN + "test_opacus_and_fast_engines_take_the_same_clipped_step[True-True-0.2]",),
    ),
    Mutation(
        "fast step ignores the temperature",
        "relink_lib/dp/train.py",
        "            temperature=config.temperature,\n            groups=grp,",
        "            temperature=DEFAULT_TEMPERATURE,\n            groups=grp,",
        (_TRAIN + "test_opacus_and_fast_engines_take_the_same_clipped_step[True-True-0.2]",),
    ),
    Mutation(
        "opacus engine samples fixed-size batches",
        "relink_lib/dp/train.py",
        "poisson_sampling=True,",
        "poisson_sampling=False,",
        (_TRAIN + "test_opacus_engine_samples_poisson_batches_at_the_recorded_rate",),
    ),
    Mutation(
        "noise drawn from the sampler's seed",
        "relink_lib/dp/train.py",
        "NOISE_SEED_OFFSET = 7919\n",
        "NOISE_SEED_OFFSET = 0\n",
        (_TRAIN + "test_noise_is_drawn_from_the_seed_plus_the_named_offset",),
    ),
    # the chapters' reductions and the mitigation stage
    Mutation(
        "relative reduction computed as after / before",
        "relink_lib/dp/outcomes.py",
        "return (before - after) / before if before > 0 else math.nan",
        "return after / before if before > 0 else math.nan",
        ("tests/test_summary_known_answers.py::test_relative_reduction_is_before_minus_after_over_before",),
    ),
    Mutation(
        "reduction read at the largest N, not the rung's reference N",
        "relink_lib/dp/stage.py",
        "return recall_reduction(m.recall, variant, k=k, pool=pool, pool_size=m.reference_pool_size)",
        "return recall_reduction(m.recall, variant, k=k, pool=pool, pool_size=None)",
        (_STAGE + "test_reduction_at_reference_reads_the_reference_n_not_the_largest",),
    ),
    Mutation(
        "mitigation ignores the profile's reference N (a hidden 10,000)",
        "relink_lib/dp/stage.py",
        "heldout_reference_pool_size(len(test), len(test), cfg.dp.frontier.reference_pool_size)",
        "heldout_reference_pool_size(len(test), len(test), 10_000)",
        (_STAGE + "test_reduction_at_reference_is_the_hand_computed_cut_at_the_profiles_n",),
    ),
    Mutation(
        "transfer cache key ignores the heads",
        "relink_lib/dp/stage.py",
        '"heads": _heads_digest(mitigation.heads),',
        '"heads": None,',
        (_STAGE + "test_transfer_with_identical_heads_reproduces_the_pretrained_numbers",),
    ),
    Mutation(
        "stacked seeds skip the clipping",
        "relink_lib/dp/batched.py",
        "coef = (cn / (sq.clamp_min(0).sqrt() + 1e-6)).clamp(max=1.0) * mask",
        "coef = mask * 1.0",
        (_BATCHED + "[False-dp-adam]",),
    ),
    Mutation(
        "stacked seeds add no noise",
        "relink_lib/dp/batched.py",
        "if clip and sigma > 0:",
        "if clip and sigma > 1e9:",
        (_BATCHED + "[False-dp-sgd]",),
    ),
    Mutation(
        "stacked seeds divide by the actual batch under DP",
        "relink_lib/dp/batched.py",
        "denom = torch.full((len(seeds), 1, 1), expected, dtype=dtype)",
        "denom = mask.sum(1).clamp_min(1.0).to(dtype)[:, None, None] * 1.0",
        (_BATCHED + "[False-clip-only]",),
    ),
    Mutation(
        "stacked seeds share one noise stream",
        "relink_lib/dp/batched.py",
        "noise_gens = [torch.Generator().manual_seed(int(s) + NOISE_SEED_OFFSET) for s in seeds]",
        "noise_gens = [torch.Generator().manual_seed(NOISE_SEED_OFFSET) for s in seeds]",
        (_BATCHED + "[False-dp-sgd]",),
    ),
]


class MutationError(RuntimeError):
    """A mutation that cannot be applied to the current source."""


def mutate(text: str, m: Mutation) -> str:
    """``text`` with ``m.old`` replaced by ``m.new``; refused unless ``old`` occurs once and ``new`` not at all."""
    if text.count(m.old) != 1 or text.count(m.new) != 0:
        raise MutationError(
            f"{m.file}: mutation {m.name!r}: expected exactly one occurrence of {m.old!r}, found "
            f"{text.count(m.old)} (and {text.count(m.new)} of the replacement {m.new!r})"
        )
    return text.replace(m.old, m.new)


def check_all(mutations: list[Mutation], root: Path = ROOT) -> list[str]:
    """Problems that would stop a mutation from applying to the source under ``root`` (none: every one applies)."""
    problems = []
    for m in mutations:
        try:
            mutate((root / m.file).read_text(), m)
        except MutationError as e:
            problems.append(str(e))
    return problems


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "nbval", ".pytest_cache")
    shutil.copytree(ROOT / "relink_lib", dst / "relink_lib", ignore=ignore)
    shutil.copytree(ROOT / "tests", dst / "tests", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dst / "pyproject.toml")


def _run_tests(copy: Path, tests: list[str], log: Path) -> int:
    """pytest's exit status for ``tests`` in a child forked from this process, importing ``relink_lib`` from
    ``copy`` (3 when another copy would be imported)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 4
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(copy)
            sys.path.insert(0, str(copy))
            import pytest

            import relink_lib

            if not Path(relink_lib.__file__).resolve().is_relative_to(copy.resolve()):
                print(f"relink_lib imported from {relink_lib.__file__}, not from the mutated copy {copy}")
                code = 3
            else:
                code = int(pytest.main([*tests, "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore"]))
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _tail(log: Path, n: int = 1) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def _preload() -> None:
    """Import the heavy third-party modules once, before forking (no relink_lib module: each child imports its copy)."""
    import numpy  # noqa: F401
    import opacus  # noqa: F401
    import pandas  # noqa: F401
    import pytest  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import torch  # noqa: F401


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run only the mutations whose name contains one of these")
    parser.add_argument("--full", action="store_true", help="run all of FULL_TESTS against every mutation")
    parser.add_argument("--check", action="store_true", help="only check that every mutation applies")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    if not chosen:
        print(f"no mutation matches {args.only}")
        return 2
    problems = check_all(chosen)
    for p in problems:
        print(f"CANNOT APPLY {p}")
    if problems or args.check:
        if not problems:
            print(f"all {len(chosen)} mutations apply")
        return 2 if problems else 0
    t0 = time.perf_counter()
    _preload()
    survivors = errors = 0
    with tempfile.TemporaryDirectory(prefix="relink-mutants-") as tmp:
        base = Path(tmp)
        clean = base / "clean"
        _copy_tree(clean)
        wanted = FULL_TESTS if args.full else sorted({t for m in chosen for t in m.killers})
        rc = _run_tests(clean, wanted, base / "clean.log")
        if rc != 0:
            print(f"ERROR the unmutated tests do not pass (pytest exit {rc}): {_tail(base / 'clean.log', 5)}")
            return 2
        print(f"clean    {len(wanted)} test ids pass unmutated ({time.perf_counter() - t0:.0f} s)")
        for i, m in enumerate(chosen):
            t1 = time.perf_counter()
            copy = base / f"mutant{i}"
            _copy_tree(copy)
            target = copy / m.file
            target.write_text(mutate(target.read_text(), m))
            log = base / f"mutant{i}.log"
            rc = _run_tests(copy, FULL_TESTS if args.full else list(m.killers), log)
            dt = time.perf_counter() - t1
            if rc == 1:
                failed = [ln.split(" ")[1] for ln in log.read_text().splitlines() if ln.startswith("FAILED ")]
                print(f"killed   {m.name} ({dt:.0f} s): {', '.join(failed) or _tail(log)}")
            elif rc == 0:
                survivors += 1
                print(f"SURVIVED {m.name} ({dt:.0f} s)")
            else:
                errors += 1
                print(f"ERROR    {m.name}: pytest exit {rc} ({dt:.0f} s): {_tail(log, 5)}")
            shutil.rmtree(copy, ignore_errors=True)
    print(
        f"{len(chosen) - survivors - errors} of {len(chosen)} mutations killed, {survivors} survived, "
        f"{errors} errors, in {time.perf_counter() - t0:.0f} s"
    )
    return 2 if errors else (1 if survivors else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
