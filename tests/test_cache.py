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


def test_second_writer_keeps_the_first_finished_entry_while_it_is_read(tmp_path):
    # the race of two processes on one key, replayed deterministically: B finishes while A is still
    # writing; a reader opens B's entry; A finishing must neither delete nor replace it
    final = tmp_path / "step" / "key"
    with cache.atomic_dir(final) as a:
        (a / "v.txt").write_text("A")
        with cache.atomic_dir(final) as b:
            (b / "v.txt").write_text("B")
        reader = open(final / "v.txt")
    assert reader.read() == "B"
    reader.close()
    assert (final / "v.txt").read_text() == "B" and cache.is_complete(final)
    assert [p.name for p in (tmp_path / "step").iterdir()] == ["key"]  # A's temporary copy is gone


def test_orphan_temporary_directories_are_cleaned(tmp_path):
    import os
    import subprocess
    import sys

    step = tmp_path / "step"
    step.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = cache._HOST
    orphan = step / f".k1.tmp-{host}-{dead_pid}-abc"
    live = step / f".k2.tmp-{host}-{os.getpid()}-abc"
    legacy_old, legacy_new = step / ".k3.tmp-abcd", step / ".k4.tmp-efgh"
    foreign_new = step / ".k5.tmp-otherhost-1-abc"
    for d in (orphan, live, legacy_old, legacy_new, foreign_new):
        d.mkdir()
        (d / "partial").write_text("x")
    past = cache._PROCESS_START - 3600
    os.utime(legacy_old, (past, past))
    done = cache.cached_dir(tmp_path, "step", {"k": 1}, lambda out: (out / "ok").write_text("1"))
    left = sorted(p.name for p in step.iterdir())
    assert orphan.name not in left and legacy_old.name not in left  # dead writer; older than this process
    assert {live.name, legacy_new.name, foreign_new.name, done.name} == set(left)


def test_entries_and_files_get_the_umask_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        done = cache.cached_dir(tmp_path, "step", {"k": 1}, lambda out: (out / "v.txt").write_text("1"))
        cache.atomic_write_bytes(tmp_path / "r" / "x.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(done.stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "r" / "x.json").stat().st_mode) == 0o644
