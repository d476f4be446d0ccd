import numpy as np
import pytest

from relink_lib import cache


def test_content_hash_is_order_independent_for_dicts_and_sensitive_to_values():
    a = cache.content_hash({"x": 1, "y": [1, 2]})
    assert a == cache.content_hash({"y": [1, 2], "x": 1})
    assert a != cache.content_hash({"x": 1, "y": [2, 1]})
    arr = np.arange(6.0)
    assert cache.content_hash(arr) != cache.content_hash(arr.reshape(2, 3))
    assert cache.content_hash(arr) != cache.content_hash(arr.astype(np.float32))


def test_content_hash_rejects_unhashable_objects():
    with pytest.raises(TypeError, match="object"):
        cache.content_hash(object())


def test_cached_dir_builds_once(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        (out / "value.txt").write_text("42")

    first = cache.cached_dir(tmp_path, "step", {"k": 1}, build)
    second = cache.cached_dir(tmp_path, "step", {"k": 1}, build)
    assert first == second and len(calls) == 1
    assert (first / "value.txt").read_text() == "42"
    cache.cached_dir(tmp_path, "step", {"k": 2}, build)
    assert len(calls) == 2


def test_killed_build_leaves_nothing_and_is_redone(tmp_path):
    def failing(out):
        (out / "partial.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached_dir(tmp_path, "step", {"k": 1}, failing)
    assert not any((tmp_path / "step").iterdir())

    done = cache.cached_dir(tmp_path, "step", {"k": 1}, lambda out: (out / "ok.txt").write_text("1"))
    assert cache.is_complete(done) and not (done / "partial.txt").exists()


def test_file_hash_changes_with_content(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_bytes(b"abc")
    before = cache.file_hash(tmp_path / "d")
    (tmp_path / "d" / "a.bin").write_bytes(b"abd")
    assert cache.file_hash(tmp_path / "d") != before
