"""Atomic writes: complete files or the old ones, never a half-written file or a stray temporary."""
import errno
import hashlib
import io
import os

import numpy as np
import pytest

from lsm_core import storage
from lsm_core.errors import UserError
from lsm_core.storage import (
    WriteFailed,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
    file_sha256,
    load_npz,
    read_json_file,
)


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


# ---- refused writes and damaged npz files ------------------------------------------------------------

def _os_error(number):
    def fail(*args, **kwargs):
        raise OSError(number, os.strerror(number))
    return fail


@pytest.mark.parametrize("number, words", [(errno.ENOSPC, "the disk or your quota is full"),
                                           (errno.EACCES, "no permission to write there")])
@pytest.mark.parametrize("where", ["replace", "fsync", "write_then_rename"])
def test_a_refused_write_names_the_file_and_the_fix_and_changes_nothing(tmp_path, monkeypatch, number, words,
                                                                          where):
    path = tmp_path / "counts.npz"
    atomic_write_bytes(path, b"old")
    target = {"replace": (os, "replace"), "fsync": (os, "fsync"),
              "write_then_rename": (storage, "_write_then_rename")}[where]
    monkeypatch.setattr(*target, _os_error(number))
    with pytest.raises(WriteFailed) as refused:
        atomic_write_bytes(path, b"new")
    message = str(refused.value)
    assert str(path) in message and words in message and "re-run the same command" in message
    assert isinstance(refused.value, UserError) and refused.value.errno == number and refused.value.path == path
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["counts.npz"]                     # no .tmp left behind


def _npz(tmp_path, compressed=True):
    path = tmp_path / "a.npz"
    atomic_save_npz(path, compressed, counts=np.arange(600, dtype=np.int32).reshape(20, 30),
                    labels=np.arange(20) % 10)
    return path


def _flip(data: bytes, at: int, mask: int = 0xFF) -> bytes:
    return data[:at] + bytes([data[at] ^ mask]) + data[at + 1:]


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("how", ["half", "zeros", "flip", "garbage", "empty", "text"])
def test_load_npz_turns_every_damage_into_value_error(tmp_path, compressed, how):
    path = _npz(tmp_path, compressed)
    data = path.read_bytes()
    path.write_bytes({"half": data[:len(data) // 2], "zeros": bytes(len(data)), "flip": _flip(data, len(data) // 2),
                      "garbage": np.random.default_rng(1).bytes(len(data)), "empty": b"",
                      "text": b"counts,labels\n1,2\n"}[how])
    with pytest.raises(ValueError):
        load_npz(path)
    with pytest.raises(ValueError):
        load_npz(io.BytesIO(path.read_bytes()))                      # a file object the same way


def test_load_npz_of_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_npz(tmp_path / "missing.npz")


def test_load_npz_checks_the_crc_of_every_member(tmp_path):
    """A flipped byte inside an uncompressed array (no zlib stream to fail) is caught by zip's CRC-32."""
    path = _npz(tmp_path, compressed=False)
    data = path.read_bytes()
    at = data.index(np.arange(600, dtype=np.int32).tobytes()) + 1000    # inside the counts' raw bytes
    path.write_bytes(_flip(data, at, 0x01))
    with pytest.raises(ValueError, match="Bad CRC-32"):
        load_npz(path)


@pytest.mark.parametrize("compressed", [True, False])
def test_load_npz_with_any_single_byte_flipped_raises_value_error_or_reads_the_same_arrays(tmp_path, compressed):
    path = _npz(tmp_path, compressed)
    data = path.read_bytes()
    original = load_npz(path)
    for at in range(len(data)):
        for mask in (0xFF, 0x01):
            try:
                arrays = load_npz(io.BytesIO(_flip(data, at, mask)))
            except ValueError:
                continue
            assert arrays.keys() <= original.keys(), at    # a member dropped is caught by the format checks
            for name, value in arrays.items():
                assert value.dtype == original[name].dtype, at
                np.testing.assert_array_equal(value, original[name], err_msg=str(at))
