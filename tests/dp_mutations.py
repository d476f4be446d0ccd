"""Apply each listed one-line mutation of the DP mechanism, run the DP tests, revert.

Run from the repository root: ``.venv/bin/python tests/dp_mutations.py``. Every mutation must
make at least one test fail ("killed"); the script exits 1 if one survives. Each file is mutated
by replacing one exact string (the replacement must not occur in the file yet) and restored by the
reverse replacement (never by rewriting the file from a copy), so concurrent edits elsewhere in
the file survive. See docs/mutation.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = [
    "tests/test_dp_train.py",
    "tests/test_dp_accounting.py",
    "tests/test_dp_fastgrad.py",
    "tests/test_summary_known_answers.py",
]

MUTATIONS: list[tuple[str, str, str, str]] = [
    (
        "fast step sums per-unit gradients without clipping",
        "relink_lib/dp/train.py",
        "max_grad_norm=config.max_grad_norm if clip else None,",
        "max_grad_norm=None,",
    ),
    (
        "clip coefficient always 1",
        "relink_lib/dp/train.py",
        "else:\n        coef = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)",
        "else:\n        coef = torch.ones_like(norms)",
    ),
    (
        "loop samples at twice the recorded rate",
        "relink_lib/dp/train.py",
        "poisson_batches(units, q, steps, sample_gen)",
        "poisson_batches(units, 2 * q, steps, sample_gen)",
    ),
    (
        "sampler includes units at twice the rate",
        "relink_lib/dp/sampling.py",
        "take = torch.rand(units.n_units, generator=generator) < sample_rate",
        "take = torch.rand(units.n_units, generator=generator) < 2 * sample_rate",
    ),
    (
        "patient mode clips each pair",
        "relink_lib/dp/train.py",
        'grp = groups if config.sampling == "patient" else None',
        "grp = None",
    ),
    (
        "noisy sum divided by the actual batch size",
        "relink_lib/dp/train.py",
        "denom = expected_batch if clip else max(1, x_img.shape[0])",
        "denom = max(1, x_img.shape[0])",
    ),
    (
        "calibrate_noise skips its Opacus confirmation",
        "relink_lib/dp/calibrate.py",
        "return _confirm_with_opacus(math.exp(root), target_epsilon, rel_tol, delta, sample_rate, steps, orders)",
        "return math.exp(root)",
    ),
    (
        "calibration accepts eps up to 1.02x the target",
        "relink_lib/dp/calibrate.py",
        "        if eps <= target:\n",
        "        if eps <= 1.02 * target:\n",
    ),
    # survivors of the first mutmut run (docs/mutation.md), killed by later tests
    ("noise added only when sigma > 1", "relink_lib/dp/train.py", "if clip and sigma > 0:", "if clip and sigma > 1:"),
    ("single-pair batches skipped", "relink_lib/dp/train.py", "if x_img.shape[0] > 0:", "if x_img.shape[0] > 1:"),
    ("empty batch leaves no gradient", "relink_lib/dp/train.py", "g_img = torch.zeros_like(w_img)", "g_img = None"),
    (
        "fast step drops the image bank",
        "relink_lib/dp/train.py",
        "bank_txt, bank_img, max_grad_norm=config.max_grad_norm if clip else None,",
        "bank_txt, None, max_grad_norm=config.max_grad_norm if clip else None,",
    ),
    (
        "fast step ignores the temperature",
        "relink_lib/dp/train.py",
        "temperature=config.temperature, groups=grp,",
        "temperature=DEFAULT_TEMPERATURE, groups=grp,",
    ),
    (
        "opacus engine samples fixed-size batches",
        "relink_lib/dp/train.py",
        "poisson_sampling=True,",
        "poisson_sampling=False,",
    ),
    (
        "relative reduction computed as after / before",
        "relink_lib/dp/stage.py",
        '"relative_reduction": (before - after) / before if before > 0',
        '"relative_reduction": after / before if before > 0',
    ),
]


def _swap(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1 or text.count(new) != 0:
        raise SystemExit(
            f"{path}: expected exactly one occurrence of {old!r}, found {text.count(old)} (and {text.count(new)} of the replacement)"
        )
    path.write_text(text.replace(old, new))


def main(only: list[str]) -> int:
    survivors = 0
    for name, file, old, new in MUTATIONS:
        if only and not any(o in name for o in only):
            continue
        path = Path(file)
        _swap(path, old, new)
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", *TESTS, "-q", "-x", "-p", "no:cacheprovider"],
                capture_output=True,
                text=True,
            )
        finally:
            _swap(path, new, old)
        failed = [ln.split(" ")[1] for ln in proc.stdout.splitlines() if ln.startswith("FAILED ")]
        killed = proc.returncode != 0
        survivors += not killed
        print(
            f"{'killed  ' if killed else 'SURVIVED'} {name}: {', '.join(failed) or proc.stdout.strip().splitlines()[-1]}"
        )
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
