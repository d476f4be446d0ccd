"""Feature engine: cache hit / miss / invalidation, resume, shards merge to the unsharded run,
and embeddings through the heads equal the model's own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relink_lib import features as fe
from relink_lib.models import load_dual_encoder
from relink_lib.models.stage import Rung, cohort_fingerprint
from relink_lib.models.testing import tiny_cohort, write_tiny_clip
from relink_lib.profiles import get_profile


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models are overhead-bound: one intra-op thread is faster, most of all on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def setup(tmp_path):
    cohort = tiny_cohort(n=40, image_size=16, n_val=8, n_test=8)
    path = write_tiny_clip(tmp_path / "model", image_size=16, patch_size=4, width=32)
    rung = Rung(index=0, name="tiny", path=path, description="random tiny CLIP")
    params = get_profile("smoke", {"features": {"batch_size": 4, "chunk_size": 8, "device": "cpu"}})
    return params, cohort, rung


class CountingEncoder:
    """Wraps a DualEncoder and counts the images it embeds (to see cache hits)."""

    def __init__(self, enc):
        self.enc, self.n_images = enc, 0

    def image_features(self, images, batch_size=None):
        self.n_images += len(images)
        return self.enc.image_features(images, batch_size)

    def text_features(self, texts, batch_size=None):
        return self.enc.text_features(texts, batch_size)


def test_features_match_direct_extraction(setup):
    params, cohort, rung = setup
    feats = fe.get_features(params, cohort, rung, "train", progress=False)
    rows = np.flatnonzero(cohort.pairs["split"] == "train")
    np.testing.assert_array_equal(feats.rows, rows)
    assert feats.image.dtype == np.float32 and feats.rows.dtype == np.int64
    enc = load_dual_encoder(rung.path, device="cpu")
    direct_img = enc.image_features(cohort.load_images(rows), batch_size=4).numpy()
    direct_txt = enc.text_features(cohort.pairs["text"].iloc[rows].tolist(), batch_size=4).numpy()
    np.testing.assert_allclose(feats.image, direct_img, rtol=0, atol=1e-6)
    np.testing.assert_allclose(feats.text, direct_txt, rtol=0, atol=1e-6)
    # embeddings via the rung's heads equal the model's own normalised features
    img, txt, got_rows = fe.get_embeddings(params, cohort, rung, "train", progress=False)
    np.testing.assert_array_equal(got_rows, rows)
    np.testing.assert_allclose(img, enc.embed_images(cohort.load_images(rows)).numpy(), atol=1e-6)
    np.testing.assert_allclose(txt, enc.embed_reports(cohort.pairs["text"].iloc[rows].tolist()).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-6)


def test_cache_hit_miss_and_invalidation(setup):
    params, cohort, rung = setup
    enc = CountingEncoder(load_dual_encoder(rung.path, device="cpu"))
    first = fe.extract_features(params, cohort, rung, "test", encoder=enc, progress=False)
    assert enc.n_images == 8 and first.name.endswith(".parts")
    feats = fe.merge_shards(params, cohort, rung, "test")
    assert not first.exists()  # parts removed once merged
    # hit: nothing recomputed, same arrays
    assert fe.extract_features(params, cohort, rung, "test", encoder=enc, progress=False) == feats.path
    assert enc.n_images == 8
    again = fe.get_features(params, cohort, rung, "test")
    np.testing.assert_array_equal(again.image, feats.image)
    # miss on other preprocessing / settings, other split, other model content, other cohort content
    other = get_profile("smoke", {"features": {"batch_size": 8, "chunk_size": 8, "device": "cpu"}})
    assert fe.feature_dir(other, cohort, rung, "test") != feats.path
    assert fe.feature_dir(params, cohort, rung, "val") != feats.path
    changed = tiny_cohort(n=40, image_size=16, n_val=8, n_test=8, seed=1)
    assert cohort_fingerprint(changed) != cohort_fingerprint(cohort)
    assert fe.feature_dir(params, changed, rung, "test") != feats.path
    cfg = rung.path / "preprocessor_config.json"
    cfg.write_text(cfg.read_text().replace('"image_std"', '"image_std_old"'))  # preprocessing changed on disk
    assert fe.feature_dir(params, cohort, rung, "test") != feats.path


def test_killed_run_resumes(setup, monkeypatch):
    params, cohort, rung = setup
    enc = CountingEncoder(load_dual_encoder(rung.path, device="cpu"))
    calls = {"n": 0}
    real = fe.cache.atomic_write_bytes

    def dying_write(path, data):
        if str(path).endswith(".npz"):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("killed")
        return real(path, data)

    monkeypatch.setattr(fe.cache, "atomic_write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        fe.extract_features(params, cohort, rung, "train", encoder=enc, progress=False)
    monkeypatch.setattr(fe.cache, "atomic_write_bytes", real)
    assert fe.missing_chunks(params, cohort, rung, "train") == [2]  # 24 train rows in chunks of 8; the third died
    with pytest.raises(RuntimeError, match="chunks missing"):
        fe.merge_shards(params, cohort, rung, "train")
    seen = enc.n_images
    fe.extract_features(params, cohort, rung, "train", encoder=enc, progress=False)
    assert enc.n_images - seen == 8  # only the missing chunk was computed
    feats = fe.merge_shards(params, cohort, rung, "train")
    fresh = get_profile("smoke", {"features": {"batch_size": 4, "chunk_size": 8, "device": "cpu"}})
    assert len(feats) == 24 and fe.feature_dir(fresh, cohort, rung, "train") == feats.path
    enc2 = load_dual_encoder(rung.path, device="cpu")
    rows = feats.rows
    np.testing.assert_allclose(
        feats.image, enc2.image_features(cohort.load_images(rows), batch_size=4).numpy(), atol=1e-6
    )


def test_shards_merge_to_the_unsharded_run(setup, tmp_path, monkeypatch):
    params, cohort, rung = setup
    whole = fe.get_features(params, cohort, rung, "all", progress=False)
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "other_cache"))
    for k in (2, 0, 1):  # any order, as independent jobs
        fe.extract_features(params, cohort, rung, "all", shard=(k, 3), progress=False)
    merged = fe.merge_shards(params, cohort, rung, "all")
    assert merged.path != whole.path
    np.testing.assert_array_equal(merged.rows, whole.rows)
    np.testing.assert_array_equal(merged.image, whole.image)
    np.testing.assert_array_equal(merged.text, whole.text)
    with pytest.raises(ValueError, match="shard"):
        fe.extract_features(params, cohort, rung, "all", shard=(3, 3))


def test_embed_features_with_other_heads(setup):
    params, cohort, rung = setup
    feats = fe.get_features(params, cohort, rung, "test", progress=False)
    torch.manual_seed(0)
    head_i = torch.nn.Linear(feats.image.shape[1], 5, bias=False)
    head_t = torch.nn.Linear(feats.text.shape[1], 5, bias=False)
    img, txt = fe.embed_features(feats, head_i, head_t)
    want = feats.image @ head_i.weight.detach().numpy().T
    np.testing.assert_allclose(img, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)
    assert txt.shape == (8, 5)
    with pytest.raises(TypeError, match="image_head"):
        fe.embed_features(feats, "not a head", head_t)


def test_validation(setup):
    params, cohort, rung = setup
    with pytest.raises(ValueError, match="split='holdout'"):
        fe.get_features(params, cohort, rung, "holdout")
    with pytest.raises(ValueError, match="chunk_size"):  # refused when the profile is built (relink_lib.config)
        get_profile("smoke", {"features": {"batch_size": 4, "chunk_size": 6}})
    with pytest.raises(ValueError, match="chunk_size"):  # and by every stage given such a mapping
        fe.get_features(dict(params.to_params(), features={"batch_size": 4, "chunk_size": 6}), cohort, rung, "test")
    bad = get_profile("smoke", {"features": {"batch_size": 4, "text_column": "summary"}})
    with pytest.raises(ValueError, match="text_column"):
        fe.get_features(bad, cohort, rung, "test")


def test_chunk_status_and_progress_callback(setup):
    params, cohort, rung = setup  # 24 train rows in chunks of 8
    st = fe.chunk_status(params, cohort, rung, "train")
    assert (st.n_rows, st.n_chunks, st.done, st.missing, st.state) == (24, 3, [], [0, 1, 2], "not started")
    seen = []
    fe.extract_features(
        params,
        cohort,
        rung,
        "train",
        shard=(1, 2),
        progress=False,
        on_chunk=lambda i, n, s: seen.append((i, n, s >= 0)),
    )
    assert seen == [(1, 8, True)]  # shard 1 of 2 owns chunk 1 only
    st = fe.chunk_status(params, cohort, rung, "train")
    assert (st.done, st.missing, st.state) == ([1], [0, 2], "partial")
    fe.extract_features(
        params, cohort, rung, "train", shard=(0, 2), progress=False, on_chunk=lambda *a: seen.append(a[0])
    )
    assert seen[1:] == [0, 2] and fe.chunk_status(params, cohort, rung, "train").state == "complete"
    feats = fe.merge_shards(params, cohort, rung, "train")
    st = fe.chunk_status(params, cohort, rung, "train")
    assert (st.state, st.missing, st.path) == ("merged", [], feats.path)


def test_explicit_chunks(setup):
    params, cohort, rung = setup  # 24 train rows in chunks of 8
    seen = []
    fe.extract_features(
        params, cohort, rung, "train", chunks=[2, 0, 2], progress=False, on_chunk=lambda i, n, s: seen.append(i)
    )
    assert seen == [0, 2] and fe.missing_chunks(params, cohort, rung, "train") == [1]
    with pytest.raises(ValueError, match=r"chunks=\[3\].*chunks 0 to 2"):
        fe.extract_features(params, cohort, rung, "train", chunks=[1, 3], progress=False)


def test_feature_entries_do_not_depend_on_the_audit_blas_but_the_ranking_token_does(setup, monkeypatch):
    # a feature shard started with one thread and a --status from a many-thread shell may benchmark different audit
    # BLAS (the choice is per thread count); extraction never runs that GEMM, so both must name one cache entry
    from relink_lib.audit.blas import GEMM_ENV, gemm_choice
    from relink_lib.numerics import cache_token, dispatch_token

    params, cohort, rung = setup
    dirs, tokens = {}, {}
    for backend in ("torch", "numpy"):
        monkeypatch.setenv(GEMM_ENV, backend)
        gemm_choice.cache_clear()
        dirs[backend], tokens[backend] = fe.feature_dir(params, cohort, rung, "train"), cache_token()
        assert dispatch_token() == f"native-{torch.backends.cpu.get_cpu_capability()}"
    gemm_choice.cache_clear()
    assert dirs["torch"] == dirs["numpy"]
    assert tokens == {"torch": dispatch_token(), "numpy": dispatch_token() + "-numpy"}  # downstream keys differ
