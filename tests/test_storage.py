"""Atomic writes: complete files or the old ones, never a half-written file or a stray temporary."""
import hashlib
import os

import numpy as np
import pytest

from lsm_core.storage import (atomic_save_npz, atomic_write_bytes, atomic_write_json, file_sha256, load_npz,
                              read_json_file)


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert os.listdir(path.parent) == ["file.bin"]
    assert path.stat().st_mode & 0o044          # readable by others, like a plain open() would give


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "file.json"
    atomic_write_json(path, {"a": 1})

    def broken_replace(src, dst):
        raise KeyboardInterrupt                # killed between writing and renaming

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_json(path, {"a": 2})
    assert path.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":1}'
    assert os.listdir(tmp_path) == ["file.json"]


def test_npz_round_trip_and_no_pickles(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.int32).reshape(2, 3), "flag": np.array([True, False])}
    atomic_save_npz(tmp_path / "a.npz", **arrays)
    loaded = load_npz(tmp_path / "a.npz")
    assert set(loaded) == {"x", "flag"}
    np.testing.assert_array_equal(loaded["x"], arrays["x"])
    with pytest.raises(TypeError, match="object"):
        atomic_save_npz(tmp_path / "b.npz", bad=np.array([{}], dtype=object))


def test_read_json_file_gives_none_for_missing_or_broken_files(tmp_path):
    atomic_write_json(tmp_path / "ok.json", {"a": [1, 2]})
    (tmp_path / "broken.json").write_text('{"a": ')
    assert read_json_file(tmp_path / "ok.json") == {"a": [1, 2]}
    assert read_json_file(tmp_path / "broken.json") is None
    assert read_json_file(tmp_path / "missing.json") is None


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (1 << 20) + 17, dtype=np.uint8).tobytes()   # > one chunk
    atomic_write_bytes(tmp_path / "blob", data)
    assert file_sha256(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
