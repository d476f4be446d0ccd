"""``python -m relink_lib features``: shard arguments and their defaults from Slurm / torchrun,
status and merge messages, and three shard processes run concurrently on one cache (one of them
killed part-way and re-run) whose merge equals an unsharded extraction into another cache bit for bit."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from relink_lib import features as fe
from relink_lib.cli import main as cli_main
from relink_lib.models.stage import Rung
from relink_lib.models.testing import tiny_cohort, write_tiny_clip
from relink_lib.pipeline import shards
from relink_lib.profiles import get_profile

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ arguments
def test_parse_shard():
    assert shards.parse_shard("0/1") == (0, 1)
    assert shards.parse_shard(" 7/8 ") == (7, 8)
    for bad in ("3/3", "-1/4", "1/0", "1", "a/b", "1/2/3"):
        with pytest.raises(ValueError, match="--shard"):
            shards.parse_shard(bad)


def test_shard_from_env():
    assert shards.shard_from_env({}) == ((0, 1), "default")
    assert shards.shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}) == ((3, 8), "slurm")
    # --array=1-8: IDs 1..8 map to shards 0..7
    assert shards.shard_from_env(
        {"SLURM_ARRAY_TASK_ID": "8", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MIN": "1"}
    ) == ((7, 8), "slurm")
    # Slurm wins over torchrun's variables when both are set
    assert shards.shard_from_env(
        {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2", "RANK": "0", "WORLD_SIZE": "4"}
    ) == ((1, 2), "slurm")
    assert shards.shard_from_env({"RANK": "2", "WORLD_SIZE": "4"}) == ((2, 4), "torchrun")
    with pytest.raises(ValueError, match="contiguous"):  # --array=0-14:2 gives IDs up to 14 with 8 tasks
        shards.shard_from_env({"SLURM_ARRAY_TASK_ID": "14", "SLURM_ARRAY_TASK_COUNT": "8"})
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_COUNT"):
        shards.shard_from_env({"SLURM_ARRAY_TASK_ID": "1"})
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        shards.shard_from_env({"RANK": "1"})


def test_shards_partition_the_chunks():
    for n_chunks in (0, 1, 5, 17):
        for n in (1, 2, 3, 8, 20):
            owned = [fe.shard_chunks(n_chunks, (k, n)) for k in range(n)]
            flat = sorted(i for o in owned for i in o)
            assert flat == list(range(n_chunks))  # every chunk once, no chunk twice
            assert max(map(len, owned)) - min(map(len, owned)) <= 1  # balanced
    assert fe.shard_chunks(10, (1, 3)) == [1, 4, 7]


def test_deal_chunks_balances_across_splits():
    counts = [8, 1, 1, 2, 4]  # chunks of five (rung, split) units
    assert shards.deal_chunks(counts, (1, 3)) == [[1, 4, 7], [], [], [0], [1]]  # global numbers 1, 4, 7, 10, 13
    for n in (1, 2, 3, 5, 16, 40):
        dealt = [shards.deal_chunks(counts, (k, n)) for k in range(n)]
        for u, count in enumerate(counts):  # every chunk of every unit goes to exactly one shard
            assert sorted(i for d in dealt for i in d[u]) == list(range(count))
        sizes = [sum(map(len, d)) for d in dealt]
        assert max(sizes) - min(sizes) <= 1, (n, sizes)  # balanced in all, not only within a split


def test_parse_targets_and_format_chunks():
    assert shards.SPLITS == fe.SPLITS
    assert shards.parse_targets(None) == list(shards.DEFAULT_TARGETS)
    got = shards.parse_targets(["train,test", "external:all", "internal:train"])
    assert [str(t) for t in got] == ["internal:train", "internal:test", "external:all"]
    with pytest.raises(ValueError, match="site 'hospital'"):
        shards.parse_targets(["hospital:all"])
    with pytest.raises(ValueError, match="split 'holdout'"):
        shards.parse_targets(["holdout"])
    assert fe.format_chunks([0, 1, 2, 5, 7, 8]) == "0-2, 5, 7-8"
    assert fe.format_chunks([4]) == "4"
    assert fe.format_chunks(list(range(0, 40, 2)), limit=3) == "0, 2, 4, ... (17 more ranges)"


def test_cli_rejects_bad_arguments(capsys, monkeypatch):
    for var in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert cli_main(["features", "--profile", "smoke", "--shard", "3/3"]) == 2
    assert "--shard='3/3'" in capsys.readouterr().err
    assert cli_main(["features", "--profile", "smoke", "--splits", "external:holdout"]) == 2
    assert "split 'holdout'" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")
    assert cli_main(["features", "--profile", "smoke"]) == 2
    assert "WORLD_SIZE" in capsys.readouterr().err
    for var in ("MIMIC_CXR_ROOT", "CHEXPERT_PLUS_ROOT", "MODELS"):
        monkeypatch.delenv(var, raising=False)
    assert cli_main(["features", "--profile", "paper", "--status"]) == 2  # the paper preflight runs first
    assert "MIMIC_CXR_ROOT is not set" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --shard and --merge are exclusive
        cli_main(["features", "--profile", "smoke", "--shard", "0/2", "--merge"])
    assert not Path(os.environ["RELINK_CACHE"]).exists()  # bad arguments stop before anything is written


# ------------------------------------------------------------------------------ in-process engine
@pytest.fixture()
def tiny(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    cohort = tiny_cohort(n=40, image_size=16, n_val=8, n_test=8)
    path = write_tiny_clip(tmp_path / "model", image_size=16, patch_size=4, width=32)
    rungs = [Rung(index=0, name="tiny", path=path, description="random tiny CLIP")]
    params = get_profile("smoke", {"features": {"batch_size": 4, "chunk_size": 4, "device": "cpu"}})
    yield params, {"internal": cohort}, rungs
    torch.set_num_threads(before)


def test_status_and_merge_name_the_missing_chunks(tiny):
    params, cohorts, rungs = tiny
    targets = shards.parse_targets(["train", "test"])  # 24 train rows = 6 chunks, 8 test rows = 2 chunks
    lines: list[str] = []
    report = shards.run_shard(params, cohorts, rungs, targets, (1, 3), log=lines.append)
    assert (report.owned, report.extracted, report.already_done) == (3, 3, 0)  # train chunks 1, 4; test chunk 1
    assert sum("chunk 4 (rows 16-19)" in line for line in lines) == 1
    table = shards.status_table(params, cohorts, rungs, targets)
    assert table[["split", "chunks", "done", "missing", "state", "missing chunks"]].values.tolist() == [
        ["train", 6, 2, 4, "partial", "0, 2-3, 5"],
        ["test", 2, 1, 1, "partial", "0"],
    ]
    merged, incomplete = shards.merge_targets(params, cohorts, rungs, targets)
    assert merged == []
    assert incomplete == [
        "rung 0 tiny, internal:train: 4 of 6 chunks missing: 0, 2-3, 5",
        "rung 0 tiny, internal:test: 1 of 2 chunks missing: 0",
    ]
    with pytest.raises(RuntimeError, match=r"chunks 0, 2-3, 5"):
        fe.merge_shards(params, cohorts["internal"], rungs[0], "train")
    again = shards.run_shard(params, cohorts, rungs, targets, (1, 3))  # a re-run of a finished shard does nothing
    assert (again.extracted, again.already_done) == (0, 3)
    for k in (0, 2):
        shards.run_shard(params, cohorts, rungs, targets, (k, 3))
    merged, incomplete = shards.merge_targets(params, cohorts, rungs, targets)
    assert incomplete == [] and len(merged) == 2
    again, _ = shards.merge_targets(params, cohorts, rungs, targets)
    assert [line.split(" -> ")[0] for line in again] == [
        "rung 0 tiny, internal:train: 24 rows (already merged)",
        "rung 0 tiny, internal:test: 8 rows (already merged)",
    ]
    assert [line.split(" -> ")[1] for line in again] == [line.split(" -> ")[1] for line in merged]
    table = shards.status_table(params, cohorts, rungs, targets)
    assert table["state"].tolist() == ["merged", "merged"] and table["missing"].tolist() == [0, 0]
    enc = rungs[0].load(device="cpu")
    feats = fe.get_features(params, cohorts["internal"], rungs[0], "train", progress=False)
    direct = enc.image_features(cohorts["internal"].load_images(feats.rows), batch_size=4).numpy()
    np.testing.assert_allclose(feats.image, direct, rtol=0, atol=1e-6)


def test_select_rungs(tiny):
    _, _, rungs = tiny
    two = rungs + [Rung(index=1, name="other", path=rungs[0].path, description="")]
    assert [r.index for r in shards.select_rungs(two, None)] == [0, 1]
    assert [r.index for r in shards.select_rungs(two, ["other", "0"])] == [1, 0]
    assert [r.index for r in shards.select_rungs(two, ["1,1"])] == [1]
    with pytest.raises(ValueError, match=r"--rungs '7'.*0 \(tiny\), 1 \(other\)"):
        shards.select_rungs(two, ["7"])


# ------------------------------------------------------------------------------ concurrent processes
OVERRIDES = json.dumps({"features": {"batch_size": 16, "chunk_size": 32}})  # smoke train: 238 rows = 8 chunks
SELECT = ["--rungs", "2", "--splits", "train", "external:all"]

KILLER = """
import os, signal, sys
from relink_lib import cache
real, seen = cache.atomic_write_bytes, []
def dying(path, data):
    if str(path).endswith('.npz'):
        seen.append(path)
        if len(seen) == 2:  # killed while writing its second chunk: a half-written temporary file stays behind
            with open(os.path.join(os.path.dirname(path), '.' + os.path.basename(path) + '.tmp-killed'), 'wb') as fh:
                fh.write(data[:len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data)
cache.atomic_write_bytes = dying
from relink_lib.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(cache: Path, results: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLURM_") and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    env.update(
        RELINK_CACHE=str(cache),
        RELINK_RESULTS=str(results),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def _start(args: list[str], env: dict[str, str], cwd: Path, kill: bool = False) -> subprocess.Popen:
    head = [sys.executable, "-c", KILLER] if kill else [sys.executable, "-m", "relink_lib"]
    return subprocess.Popen(
        head + ["features", "--profile", "smoke", "--overrides", OVERRIDES, *SELECT, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start_array_task(k: int, n: int, env: dict[str, str]) -> subprocess.Popen:
    """Task k of an n-task Slurm array running the recipe ``examples/slurm/extract_features.sbatch``."""
    env = dict(
        env,
        SLURM_ARRAY_TASK_ID=str(k),
        SLURM_ARRAY_TASK_COUNT=str(n),
        SLURM_ARRAY_TASK_MIN="0",
        RELINK_PROFILE="smoke",
        PYTHON=sys.executable,
        RELINK_REPO=str(ROOT),
    )
    return subprocess.Popen(
        ["bash", str(ROOT / "examples" / "slurm" / "extract_features.sbatch"), "--overrides", OVERRIDES, *SELECT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=600)
    return proc.returncode, out, err


def _merged(out: str) -> dict[str, Path]:
    return {m.group(1): Path(m.group(2)) for m in re.finditer(r"^merged (.+?): \d+ rows.* -> (\S+)$", out, re.M)}


def _cli(args: list[str], cache: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``python -m relink_lib features ...`` in this process (status and merge compute no features)."""
    monkeypatch.setenv("RELINK_CACHE", str(cache))
    capsys.readouterr()
    rc = cli_main(["features", "--profile", "smoke", "--overrides", OVERRIDES, *SELECT, *args])
    return rc, capsys.readouterr().out


def test_three_concurrent_shards_merge_to_the_unsharded_run(tmp_path, monkeypatch, capsys):
    work, results = tmp_path / "cwd", tmp_path / "results"
    work.mkdir()
    monkeypatch.setenv("RELINK_RESULTS", str(results))
    env_a, env_b = _env(tmp_path / "a", results), _env(tmp_path / "b", results)
    # three shards on one empty cache at the same time (shard 1 is killed part-way), and an
    # unsharded extraction into another cache beside them
    procs = [
        _start(["--shard", "0/3"], env_a, work),
        _start(["--shard", "1/3"], env_a, work, kill=True),
        _start_array_task(2, 3, env_a),
    ]  # shard 2 as the Slurm recipe runs it: K/N from the array's variables
    procs.append(_start([], env_b, work))
    done = [_finish(p) for p in procs]
    assert [d[0] for d in done] == [0, -9, 0, 0], [d[2][-2000:] for d in done]
    assert "shard 0/3: 4 chunks extracted, 0 of 4 already done" in done[0][1]  # train 0, 3, 6 and external 1
    assert "chunk 6 (rows 192-223)" in done[0][2] and "about" in done[0][2]  # progress, one line per chunk
    assert "extracting every chunk (shard 0/1)" in done[3][2]
    assert (
        "shard 2/3 from slurm" in done[2][2] and "shard 2/3: 4 chunks extracted" in done[2][1]
    )  # train 2, 5; ext 0, 3
    rc, out = _cli(["--status"], tmp_path / "a", monkeypatch, capsys)
    assert rc == 0 and re.search(r"2 full-reports internal train +238 +8 +6 +2 +partial +4, 7", out), out
    assert re.search(r"2 full-reports external +all +120 +4 +3 +1 +partial +2", out), out
    rc, out = _cli(["--merge"], tmp_path / "a", monkeypatch, capsys)  # merges nothing incomplete, names what is missing
    assert rc == 1 and "incomplete rung 2 full-reports, internal:train: 2 of 8 chunks missing: 4, 7" in out, out
    assert "incomplete rung 2 full-reports, external:all: 1 of 4 chunks missing: 2" in out, out
    assert "merged" not in out
    rc, out = _cli(["--merge"], tmp_path / "b", monkeypatch, capsys)
    assert rc == 0
    reference = _merged(out)
    rc, out, err = _finish(_start(["--shard", "1/3"], env_a, work))  # the killed shard, re-run
    assert rc == 0 and "shard 1/3: 3 chunks extracted, 1 of 4 already done" in out, err[-2000:]
    rc, out = _cli(["--merge"], tmp_path / "a", monkeypatch, capsys)
    assert rc == 0, out
    merged = _merged(out)
    assert (
        sorted(merged)
        == sorted(reference)
        == ["rung 2 full-reports, external:all", "rung 2 full-reports, internal:train"]
    )
    for label, path in merged.items():
        assert path.parent.parent.parent == tmp_path / "a" and reference[label].parent.parent.parent == tmp_path / "b"
        for name in ("image.npy", "text.npy", "rows.npy"):
            assert (path / name).read_bytes() == (reference[label] / name).read_bytes(), (label, name)
        assert not path.with_name(path.name + ".parts").exists()  # parts removed, the killed write's leftovers too
    assert np.load(merged["rung 2 full-reports, internal:train"] / "image.npy").shape[0] == 238
    assert list(work.iterdir()) == [] and not results.exists()  # it writes only under the cache


def test_recipes_parse_and_the_book_quotes_them():
    scripts = {
        name: (ROOT / "examples" / "slurm" / name).read_text() for name in ("extract_features.sbatch", "book.sbatch")
    }
    for name in scripts:
        assert subprocess.run(["bash", "-n", str(ROOT / "examples" / "slurm" / name)]).returncode == 0, name
    assert "#SBATCH --array=" in scripts["extract_features.sbatch"] and "--merge" in scripts["book.sbatch"]
    page = (ROOT / "book" / "cluster.md").read_text()
    quoted = page.split("```bash\n# extract_features.sbatch", 1)[1].split("```", 1)[0].splitlines()[1:]
    code = [line.strip() for line in quoted if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) == 4
    for line in code:  # the page's excerpt is the scripts' text, not a paraphrase that drifted
        assert any(line in text for text in scripts.values()), line
    assert "file: book/cluster" in (ROOT / "_toc.yml").read_text()
