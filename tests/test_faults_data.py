"""Damaged tables and damaged caches (issue 27, fault classes 3 and 5) and bit-identical features of
identical reports (class 1): each fault is built on purpose, as an interrupted copy or a crash would
leave it, and gives an error naming the file (and row or column) or a warned recomputation.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from relink_lib import cache
from relink_lib import features as fe
from relink_lib.cohorts import (
    Cohort,
    export,
    load_chexpert_plus,
    load_folder,
    load_mimic_cxr,
    make_synthetic_cohort,
    stage,
)
from relink_lib.models import load_dual_encoder
from relink_lib.models.stage import Rung
from relink_lib.models.testing import tiny_cohort, write_tiny_clip
from relink_lib.profiles import get_profile

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPLIT = "mimic-cxr-2.0.0-split.csv.gz"
LABELS = "mimic-cxr-2.0.0-chexpert.csv.gz"
CHEXBERT = "chexbert_labels/report_fixed.json"


@pytest.fixture(scope="module")
def synthetic() -> Cohort:
    return make_synthetic_cohort(30, image_size=32, seed=13)


@pytest.fixture(scope="module")
def mimic_dir(tmp_path_factory, synthetic: Cohort) -> Path:
    return export(synthetic, tmp_path_factory.mktemp("mimic") / "root")


@pytest.fixture
def mimic(tmp_path: Path, mimic_dir: Path) -> Path:
    return Path(shutil.copytree(mimic_dir, tmp_path / "root"))


def _gz_text(path: Path) -> str:
    return gzip.decompress(path.read_bytes()).decode()


def _write_gz(path: Path, text: str) -> None:
    path.write_bytes(gzip.compress(text.encode()))


# ------------------------------------------------------------------ class 3: damaged tables
def test_a_cut_last_row_is_refused_naming_the_file_and_row(mimic: Path) -> None:
    text = _gz_text(mimic / LABELS)
    n_rows = len(text.splitlines()) - 1
    _write_gz(mimic / LABELS, text.rstrip("\n")[:-9])  # an interrupted copy: the last row loses its tail
    with pytest.raises(
        ValueError, match=rf"chexpert.csv.gz: row {n_rows - 1} \(the last\) has \d+ of the header's 16 "
    ):
        load_mimic_cxr(mimic)


def test_a_complete_last_row_without_a_final_line_break_is_accepted(tmp_path: Path) -> None:
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(tmp_path / f"im{i}.png")
    body = "patient_id,image_path,text\n" + "\n".join(f"p{i},im{i}.png,report {i}" for i in range(3))
    (tmp_path / "pairs.csv").write_text(body)  # no trailing newline, every field there
    assert len(load_folder(tmp_path / "pairs.csv", tmp_path)) == 3
    (tmp_path / "pairs.csv").write_text(body[: body.rindex(",")])  # the last row cut before its text
    with pytest.raises(ValueError, match=r"pairs.csv: row 2 \(the last\) has 2 of the header's 3 fields.*cut off"):
        load_folder(tmp_path / "pairs.csv", tmp_path)


def test_a_label_table_cut_between_rows_warns_and_an_empty_one_is_refused(mimic: Path) -> None:
    lines = _gz_text(mimic / LABELS).splitlines()
    kept = lines[: 1 + (len(lines) - 1) * 2 // 3]  # an interrupted copy that stopped at a line break
    n_missing = len(lines) - len(kept)
    _write_gz(mimic / LABELS, "\n".join(kept) + "\n")
    with pytest.warns(UserWarning, match=rf"kept incomplete: \{{'no_label_row': {n_missing}\}}.*chexpert.csv.gz"):
        back = load_mimic_cxr(mimic)
    assert back.summary["excluded"]["no_label_row"] == n_missing
    _write_gz(mimic / LABELS, lines[0] + "\n")  # the header alone
    with pytest.raises(ValueError, match=r"all 30 usable studies are incomplete \('no_label_row'\).*chexpert.csv.gz"):
        load_mimic_cxr(mimic)


def test_a_chexpert_label_file_cut_between_lines_warns(tmp_path: Path) -> None:
    root = export(make_synthetic_cohort(20, image_size=32, seed=3, site="external"), tmp_path / "cx", "chexpert-plus")
    path = root / CHEXBERT
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    with pytest.warns(UserWarning, match=r"kept incomplete: \{'no_label_line': \d+\}.*report_fixed.json"):
        back = load_chexpert_plus(root)
    assert back.summary["excluded"]["no_label_line"] >= len(lines) // 2 - 1
    path.write_text("")
    with pytest.raises(ValueError, match=r"usable studies are incomplete \('no_label_line'\).*report_fixed.json"):
        load_chexpert_plus(root)


def test_a_column_named_twice_in_the_header_is_refused(mimic: Path) -> None:
    lines = _gz_text(mimic / LABELS).splitlines()
    header = lines[0].split(",")
    edema = header.index("Edema")
    header[edema + 1] = "Edema"  # pandas would call it Edema.1 and the loader would read the first
    _write_gz(mimic / LABELS, "\n".join([",".join(header), *lines[1:]]) + "\n")
    with pytest.raises(
        ValueError, match=rf"chexpert.csv.gz: column 'Edema' appears more than once .*columns {edema} and {edema + 1}"
    ):
        load_mimic_cxr(mimic)


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_a_damaged_gzip_is_an_error_naming_the_file(mimic: Path, damage: str) -> None:
    data = bytearray(gzip.compress(_gz_text(mimic / SPLIT).encode()))  # a 10-byte header, no file name
    if damage == "corrupt":
        data[10:30] = b"\xff" * 20  # the deflate stream itself: zlib.error
    else:
        data = data[: len(data) // 2]
    (mimic / SPLIT).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"split.csv.gz: damaged or truncated compressed file \((error|EOFError): "):
        load_mimic_cxr(mimic)


# ------------------------------------------------------------------ class 5: the cache module
def test_a_truncated_or_missing_file_of_an_entry_is_recomputed_with_a_warning(tmp_path: Path) -> None:
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "sub").mkdir()
        (out / "sub" / "value.bin").write_bytes(b"x" * 100)

    entry = cache.cached_dir(tmp_path, "step", {"k": 1}, build)
    manifest = json.loads((entry / cache.DONE_MARKER).read_text())
    assert manifest["files"] == {"sub/value.bin": 100}
    with open(entry / "sub" / "value.bin", "r+b") as fh:
        fh.truncate(40)
    with pytest.warns(UserWarning, match=r"value.bin: 40 bytes, expected 100.*recomputing it"):
        again = cache.cached_dir(tmp_path, "step", {"k": 1}, build)
    assert again == entry and len(calls) == 2 and (entry / "sub" / "value.bin").read_bytes() == b"x" * 100
    (entry / "sub" / "value.bin").unlink()
    with pytest.warns(UserWarning, match=r"value.bin: missing"):
        cache.cached_dir(tmp_path, "step", {"k": 1}, build)
    assert len(calls) == 3 and cache.is_complete(entry)
    assert [p.name for p in (tmp_path / "step").iterdir()] == [entry.name]  # the damaged copies are gone


def test_atomic_writes_fsync_files_before_the_rename_and_the_directory_after(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def rename(a, b) -> None:
        events.append(("rename", str(b)))
        real_rename(a, b)

    def replace(a, b) -> None:
        events.append(("rename", str(b)))
        real_replace(a, b)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the fsync'ed files")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    entry = cache.cached_dir(tmp_path, "step", {"k": 1}, lambda out: (out / "v.txt").write_text("1"))
    names = [(kind, Path(p).name) for kind, p in events]
    at = names.index(("rename", entry.name))
    before = {n for kind, n in names[:at] if kind == "fsync"}
    assert {"v.txt", cache.DONE_MARKER} <= before  # data and marker are on disk before the entry appears
    assert ("fsync", "step") in names[at:]  # and the rename itself after
    events.clear()
    cache.atomic_write_bytes(tmp_path / "r" / "x.json", b"{}")
    names = [(kind, Path(p).name) for kind, p in events]
    assert names[0][0] == "fsync" and names[1] == ("rename", "x.json") and names[2] == ("fsync", "r")


# ------------------------------------------------------------------ class 5: the cohort cache
def _damage(path: Path, keep: float = 0.5) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(int(path.stat().st_size * keep))


def test_a_saved_cohort_with_a_truncated_file_is_an_error_naming_it(tmp_path: Path) -> None:
    cohort = tiny_cohort(n=12, image_size=8, n_val=2, n_test=2)
    for name, match in (
        ("images.npy", r"images.npy: \d+ bytes, expected \d+ for a uint8 array of shape \(12, 8, 8\)"),
        ("pairs.pkl", r"pairs.pkl: unreadable .*expected the pairs table Cohort.save pickled"),
        ("meta.json", r"meta.json: not valid JSON"),
    ):
        saved = cohort.save(tmp_path / name)
        _damage(saved / name)
        with pytest.raises(cache.DamagedEntry, match=match):
            Cohort.load(saved)
    saved = cohort.save(tmp_path / "short")
    np.save(saved / "images.npy", np.zeros((11, 8, 8), np.uint8))  # whole, but one image short
    with pytest.raises(cache.DamagedEntry, match=r"images.npy: holds uint8 \(11, 8, 8\); expected uint8 \(12, 8, 8\)"):
        Cohort.load(saved)


def test_a_damaged_cohort_cache_entry_is_rebuilt_with_a_warning(tmp_path: Path, mimic: Path, monkeypatch) -> None:
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "cache"))
    params = get_profile(
        "smoke", {"data": {"mimic_cxr_root": str(mimic)}, "cohort": {"source": "real", "image_size": 32}}
    )
    first = stage.get_cohort(params)
    pairs = next((tmp_path / "cache").rglob("pairs.pkl"))
    _damage(pairs)
    with pytest.warns(UserWarning, match=r"pairs.pkl: \d+ bytes, expected \d+ .*recomputing it"):
        again = stage.get_cohort(params)
    pd.testing.assert_frame_equal(again.pairs, first.pairs)


# ------------------------------------------------------------------ class 5: the features cache
@pytest.fixture()
def setup(tmp_path):
    cohort = tiny_cohort(n=40, image_size=16, n_val=8, n_test=8)
    path = write_tiny_clip(tmp_path / "model", image_size=16, patch_size=4, width=32)
    rung = Rung(index=0, name="tiny", path=path, description="random tiny CLIP")
    params = get_profile("smoke", {"features": {"batch_size": 4, "chunk_size": 8, "device": "cpu"}})
    return params, cohort, rung


class CountingEncoder:
    """Wraps a DualEncoder and counts the images it embeds (to see what is recomputed)."""

    def __init__(self, enc):
        self.enc, self.n_images = enc, 0

    def image_features(self, images, batch_size=None):
        self.n_images += len(images)
        return self.enc.image_features(images, batch_size)

    def text_features(self, texts, batch_size=None):
        return self.enc.text_features(texts, batch_size)


def _parts(params, cohort, rung, split) -> Path:
    return fe.chunk_status(params, cohort, rung, split).path


@pytest.mark.parametrize("damage", ["zero-byte", "one-image-row-short", "cut"])
def test_a_damaged_chunk_is_not_done_and_is_extracted_again(setup, damage: str) -> None:
    params, cohort, rung = setup  # 24 train rows in chunks of 8
    enc = CountingEncoder(load_dual_encoder(rung.path, device="cpu"))
    fe.extract_features(params, cohort, rung, "train", encoder=enc, progress=False)
    chunk = _parts(params, cohort, rung, "train") / "chunk_00001.npz"
    good = dict(np.load(chunk))
    if damage == "zero-byte":
        chunk.write_bytes(b"")
    elif damage == "cut":
        _damage(chunk, 0.9)
    else:
        np.savez(chunk, image=good["image"][:-1], text=good["text"], rows=good["rows"])
    assert fe.missing_chunks(params, cohort, rung, "train") == [1]
    with pytest.raises(RuntimeError, match=r"chunks 1\).*damaged: .*chunk_00001.npz"):
        fe.merge_shards(params, cohort, rung, "train")
    seen = enc.n_images
    with pytest.warns(UserWarning, match=r"chunk_00001.npz: damaged feature chunk .*extracting it again"):
        fe.extract_features(params, cohort, rung, "train", encoder=enc, progress=False)
    assert enc.n_images - seen == 8  # that chunk alone
    feats = fe.merge_shards(params, cohort, rung, "train")
    np.testing.assert_array_equal(feats.image[8:16], good["image"])
    assert feats.image.shape[0] == feats.text.shape[0] == 24


def test_a_chunk_with_unreadable_data_is_removed_and_extracted_again(setup, monkeypatch) -> None:
    params, cohort, rung = setup
    fresh = fe.get_features(params, cohort, rung, "test", progress=False)
    shutil.rmtree(fresh.path)

    def corrupt_chunk() -> Path:
        fe.extract_features(params, cohort, rung, "test", progress=False)
        chunk = _parts(params, cohort, rung, "test") / "chunk_00000.npz"
        data = bytearray(chunk.read_bytes())
        at = data.find(np.load(chunk)["image"].tobytes()[:64])
        assert at > 0
        data[at + 10] ^= 0xFF  # same size and headers, the image data's CRC fails
        chunk.write_bytes(bytes(data))
        return chunk

    chunk = corrupt_chunk()
    with pytest.warns(UserWarning, match=r"chunk_00000.npz.*BadZipFile: Bad CRC-32.*again"):
        feats = fe.get_features(params, cohort, rung, "test", progress=False)
    np.testing.assert_array_equal(feats.image, fresh.image)
    # a chunk too large for its headers' check to read its data: the merge finds it, removes it, names it
    shutil.rmtree(feats.path)
    chunk = corrupt_chunk()
    with monkeypatch.context() as m:
        m.setattr(fe, "_chunk_problem", lambda path, n_rows: None)
        with pytest.raises(
            fe.DamagedChunks, match=r"unreadable, removed to be extracted again: .*chunk_00000.npz \(BadZipFile"
        ):
            fe.merge_shards(params, cohort, rung, "test")
    assert not chunk.exists() and fe.missing_chunks(params, cohort, rung, "test") == [0]
    np.testing.assert_array_equal(fe.get_features(params, cohort, rung, "test", progress=False).image, fresh.image)


def test_a_truncated_merged_array_is_recomputed_with_a_warning(setup) -> None:
    params, cohort, rung = setup
    first = fe.get_features(params, cohort, rung, "test", progress=False)
    _damage(first.path / "image.npy", 0.6)
    with pytest.warns(UserWarning, match=r"image.npy: \d+ bytes, expected \d+.*recomputing it"):
        again = fe.get_features(params, cohort, rung, "test", progress=False)
    np.testing.assert_array_equal(again.image, first.image)
    np.testing.assert_array_equal(again.text, first.text)


def test_a_damaged_entry_without_a_manifest_names_the_file_and_is_recomputed(setup) -> None:
    params, cohort, rung = setup
    first = fe.get_features(params, cohort, rung, "test", progress=False)
    (first.path / cache.DONE_MARKER).write_text("ok\n")  # an entry written before markers held sizes
    np.save(first.path / "text.npy", first.text[:-1])  # one text row short, whole as a file
    with pytest.raises(cache.DamagedEntry, match=r"text.npy: shape \(7, \d+\), expected \(8, \d+\)"):
        fe._load(first.path)
    _damage(first.path / "rows.npy", 0.7)
    with pytest.raises(cache.DamagedEntry, match=r"rows.npy: \d+ bytes, expected \d+ for a int64 array of shape"):
        fe._load(first.path)
    with pytest.warns(UserWarning, match=r"damaged features .*recomputing them"):
        again = fe.get_features(params, cohort, rung, "test", progress=False)
    np.testing.assert_array_equal(again.text, first.text)


def test_two_concurrent_merges_of_one_key_both_return_the_merged_arrays(setup, monkeypatch) -> None:
    params, cohort, rung = setup
    fe.extract_features(params, cohort, rung, "train", progress=False)
    started = threading.Event()
    real_merge = fe._merge

    def slow_merge(*args):  # the first merger is still writing when the second arrives
        started.set()
        time.sleep(0.5)
        real_merge(*args)

    monkeypatch.setattr(fe, "_merge", slow_merge)
    results: dict[str, object] = {}

    def merge(name: str) -> None:
        try:
            results[name] = fe.merge_shards(params, cohort, rung, "train")
        except BaseException as exc:  # reported below
            results[name] = exc

    first = threading.Thread(target=merge, args=("first",))
    first.start()
    assert started.wait(30)
    second = threading.Thread(target=merge, args=("second",))
    second.start()
    first.join()
    second.join()
    a, b = results["first"], results["second"]
    assert isinstance(a, fe.Features) and isinstance(b, fe.Features), results
    assert a.path == b.path and not fe._parts_dir(a.path).exists()
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.text, b.text)


# ------------------------------------------------------------------ class 1: identical captions
def test_identical_reports_get_bit_identical_text_features(setup) -> None:
    params, tiny, rung = setup
    short = "FINDINGS: small opacity."
    long = "FINDINGS: " + " ".join(["large opacity in the upper left zone with a small effusion"] * 5)
    pairs = tiny.pairs.copy()
    # the same short report padded with a long one (row 1), alone in a batch of short ones, and in another chunk
    for row, text in ((0, short), (1, long), (5, short), (9, short), (20, short), (30, short)):
        pairs.loc[row, "text"] = text
    images = np.rint(tiny.load_images() * 255).astype(np.uint8)
    cohort = Cohort(pairs, public=True, name="dups", images=images)
    feats = fe.get_features(params, cohort, rung, "all", progress=False)
    same = np.flatnonzero(cohort.pairs["text"].to_numpy() == short)
    assert len(same) == 5
    for row in same[1:]:
        assert np.array_equal(feats.text[row], feats.text[same[0]]), row
    # every duplicated text of the tiny cohort too (12 distinct texts over 40 rows)
    for text in set(cohort.pairs["text"]):
        rows = np.flatnonzero(cohort.pairs["text"].to_numpy() == text)
        assert all(np.array_equal(feats.text[r], feats.text[rows[0]]) for r in rows[1:])
    # and the features are the encoder's own (to float32 rounding)
    enc = load_dual_encoder(rung.path, device="cpu")
    direct = enc.text_features(cohort.pairs["text"].tolist(), batch_size=4).numpy()
    np.testing.assert_allclose(feats.text, direct, rtol=0, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fe.get_features(params, cohort, rung, "all", progress=False)  # a clean hit: no warning
