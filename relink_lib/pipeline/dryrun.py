"""A dry run of the ``paper`` profile without credentialed data.

The ci-profile synthetic cohorts are exported in the two official layouts (internal site as
MIMIC-CXR-JPG 2.0.0, external site as CheXpert Plus), the ci ladder's checkpoints are listed
as ``hf-clip`` models, and every chapter runs on the ``paper`` profile against them, through
the real loaders, the preflight and the offline checkpoint adapters. Its results, cache and
executed notebooks go to ``*/dryrun/`` folders so they never mix with a real paper run.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..cohorts import export
from ..cohorts.stage import get_cohort
from ..models.stage import get_ladder
from ..numerics import apply_in_process, mode_of
from ..profiles import get_profile, project_root
from .execute import NotebookRun, execute_book
from .preflight import check_paper_inputs
from .toc import chapter_notebooks

# Paper-profile parameters kept small enough for a CPU: the code path is the paper's, the scale is not.
DRY_RUN_OVERRIDES: dict[str, Any] = {
    "cohort": {"image_size": 64},
    "features": {"batch_size": 128},
    "audit": {"n_boot": 20, "chunk_size": 512},
    "dp": {"budget_sweep": {"epochs": 2}, "batch_size": 128, "bank_size": 256, "frontier": {"epochs": [2]}},
    "budget": {"epsilons": [0.34, 8.0, 1e6, None], "attack_candidates": 20},
}


def dry_run_dirs(root: Path | None = None) -> dict[str, Path]:
    """Where the dry run writes: inputs (exported layouts, models.json), results, cache, executed notebooks."""
    root = root or project_root()
    return {
        "inputs": root / "cache" / "dryrun-inputs",
        "results": root / "results" / "dryrun",
        "cache": root / "cache" / "dryrun",
        "executed": root / "_build" / "executed" / "paper-dryrun",
    }


def prepare_inputs(root: Path | None = None, base_profile: str = "ci") -> dict[str, str]:
    """Export the ``base_profile`` synthetic cohorts and ladder as real-data inputs; return the env vars to use."""
    inputs = dry_run_dirs(root)["inputs"]
    params = get_profile(base_profile)
    env = {
        "MIMIC_CXR_ROOT": str(inputs / "mimic-cxr-jpg"),
        "CHEXPERT_PLUS_ROOT": str(inputs / "chexpert-plus"),
        "MODELS": str(inputs / "models.json"),
    }
    apply_in_process(
        mode_of(params)
    )  # so the base profile's cached ladder (trained in its mode) is found, not retrained
    for site, name in (("internal", "mimic-cxr-jpg"), ("external", "chexpert-plus")):
        if not (inputs / name).exists():  # exported whole or not at all: a killed export leaves no partial layout
            tmp = inputs / f".{name}.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            export(get_cohort(params, site), tmp, layout=name)
            os.replace(tmp, inputs / name)
    models = [{"name": rung.name, "kind": "hf-clip", "path": str(rung.path)} for rung in get_ladder(params)]
    (inputs / "models.json").write_text(json.dumps(models, indent=1) + "\n")
    return env


def notebook_outputs(path: Path) -> str:
    """All text and data of an executed notebook's outputs, concatenated."""
    nb = json.loads(Path(path).read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            for value in out.get("data", {}).values():
                parts.append("".join(value) if isinstance(value, list) else str(value))
    return "\n".join(parts)


def report_text_leaks(executed: Path, texts: list[str], prefix_chars: int = 40) -> dict[str, int]:
    """Per executed notebook, how many reports show up in its outputs (by their first ``prefix_chars`` characters).

    Tables truncate long cells, so a report that reaches a page shows at least its beginning.
    """
    prefixes = {t[:prefix_chars] for t in texts if isinstance(t, str) and len(t) >= prefix_chars}
    leaks = {}
    for nb in sorted(Path(executed).glob("*.ipynb")):
        found = sum(p in notebook_outputs(nb) for p in prefixes)
        if found:
            leaks[nb.name] = found
    return leaks


def run_dry_run(root: Path | None = None, base_profile: str = "ci") -> list[NotebookRun]:
    """Prepare the inputs, execute every chapter on the ``paper`` profile against them, and check
    that none of the (now private) report text reached an executed notebook."""
    root = root or project_root()
    dirs = dry_run_dirs(root)
    env = prepare_inputs(root, base_profile)
    os.environ.update(env)
    os.environ["RELINK_RESULTS"] = str(dirs["results"])
    os.environ["RELINK_CACHE"] = str(dirs["cache"])
    check_paper_inputs(get_profile("paper", DRY_RUN_OVERRIDES))
    runs = execute_book(chapter_notebooks(root), "paper", overrides=DRY_RUN_OVERRIDES, out_dir=dirs["executed"])
    params = get_profile(base_profile)
    texts = [t for site in ("internal", "external") for t in get_cohort(params, site).pairs["text"]]
    leaks = report_text_leaks(dirs["executed"], texts)
    if leaks:
        raise RuntimeError(f"PHI guard failed: report text of the private cohorts reached executed notebooks: {leaks}")
    return runs
