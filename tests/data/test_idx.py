"""The IDX reader and writer: byte layout, round trips, gzip, and damaged files."""
import gzip

import numpy as np
import pytest

from lsm_core.data.idx import decode_idx, encode_idx, load_idx_bytes, read_idx, write_idx
from lsm_core.errors import UserError


def test_header_and_items_are_big_endian_as_in_lecuns_files():
    data = encode_idx(np.array([[1, 2, 3], [4, 5, 258]], np.int16))
    assert data == bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3,
                          0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 1, 2])
    labels = encode_idx(np.array([7, 2], np.uint8))
    assert labels == bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 7, 2])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_round_trip_every_dtype_raw_and_gzipped(tmp_path, dtype, name):
    rng = np.random.default_rng(1)
    array = (rng.random((4, 3, 5)) * 100 - (0 if np.dtype(dtype).kind == "u" else 50)).astype(dtype)
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_gzip_is_detected_from_the_content_not_the_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "no-suffix", array, compress=True)
    np.testing.assert_array_equal(read_idx(path), array)
    np.testing.assert_array_equal(load_idx_bytes(gzip.compress(encode_idx(array))), array)
    (tmp_path / "fake.gz").write_bytes(encode_idx(array))
    with pytest.raises(UserError, match="named .gz but is not gzip-compressed"):
        read_idx(tmp_path / "fake.gz")


def test_empty_dimension_and_scalar():
    np.testing.assert_array_equal(decode_idx(encode_idx(np.zeros((0, 28, 28), np.uint8))), np.zeros((0, 28, 28)))
    assert decode_idx(encode_idx(np.array(5, np.int32))) == 5


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-1], "is truncated: dimensions \\[3, 4\\]"),
    (lambda d: d + b"\x00\x00", "has 2 bytes after the \\[3, 4\\] array"),
    (lambda d: d[:6], "is truncated: its header promises 2 dimensions"),
    (lambda d: d[:3], "only 3 bytes"),
    (lambda d: b"\x01" + d[1:], "is not an IDX file: its magic number is 0x01000802"),
    (lambda d: d[:2] + b"\x07" + d[3:], "is not an IDX file"),
    (lambda d: d[:4] + b"\xff\xff\xff\xff" + d[8:], "damaged header"),
])
def test_damaged_files_give_clear_errors(tmp_path, damage, message):
    data = damage(encode_idx(np.arange(12, dtype=np.uint8).reshape(3, 4)))
    (tmp_path / "bad").write_bytes(data)
    with pytest.raises(UserError, match=message) as info:
        read_idx(tmp_path / "bad")
    assert str(tmp_path / "bad") in str(info.value)


def test_truncated_gzip_and_missing_file(tmp_path):
    blob = gzip.compress(encode_idx(np.arange(1000, dtype=np.int32)))
    (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(UserError, match="damaged gzip file"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(UserError, match="Cannot read the IDX file"):
        read_idx(tmp_path / "absent")


def test_unsupported_dtype_is_refused():
    with pytest.raises(ValueError, match="IDX cannot store dtype int64"):
        encode_idx(np.zeros(3, np.int64))
