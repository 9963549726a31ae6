"""Atomic writes: complete files or the old ones, never a half-written file or a stray temporary."""
import os

import numpy as np
import pytest

from lsm_core.storage import atomic_save_npz, atomic_write_bytes, atomic_write_json, load_npz


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
