"""Tests of lsm_core.datasets: the shipped MNIST file, the SPEC 3.3 encoding, the split, errors."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import urllib.error

import numpy as np
import pytest

from lsm_core import datasets as ds
from lsm_core.errors import UserError
from lsm_core.storage import load_npz

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SHIPPED = ds.DATA_DIR_DEFAULT / "mnist.npz"


@pytest.fixture(scope="module")
def mnist():
    return ds.load_image_dataset("mnist", verify=False)


@pytest.fixture(scope="module")
def full_split(mnist):
    return ds.split_image_dataset(mnist, 50000, 10000, 10000)


def reference_probabilities(images, rows=None):
    """SPEC 3.3 written out literally: x / sum(x) per image, then / the largest value of the split.

    Returns the given `rows` (default: all) of the encoded split; works in chunks to stay fast.
    """
    def normalised(chunk):
        x = np.asarray(chunk, dtype=np.float64).reshape(len(chunk), -1)
        sums = x.sum(axis=1, keepdims=True)
        return np.divide(x, sums, out=np.zeros_like(x), where=sums > 0)

    largest = max(normalised(images[i:i + 5000]).max() for i in range(0, len(images), 5000))
    rows = np.arange(len(images)) if rows is None else rows
    return (normalised(images[rows]) / largest).astype(np.float32)


def write_pickle_gz(path, parts):
    with gzip.open(path, "wb") as handle:
        pickle.dump(parts, handle, protocol=2)
    return path


# ---------------------------------------------------------------------------------------------
# The shipped file
# ---------------------------------------------------------------------------------------------

def test_shipped_mnist_layout():
    arrays = load_npz(SHIPPED)
    assert sorted(arrays) == sorted(ds.ARRAY_KEYS)
    assert arrays["x_train"].shape == (60000, 28, 28) and arrays["x_train"].dtype == np.uint8
    assert arrays["x_test"].shape == (10000, 28, 28) and arrays["x_test"].dtype == np.uint8
    assert arrays["y_train"].shape == (60000,) and arrays["y_train"].dtype == np.uint8
    assert arrays["y_test"].shape == (10000,) and arrays["y_test"].dtype == np.uint8
    assert np.bincount(arrays["y_train"]).tolist() == TRAIN_COUNTS
    assert np.bincount(arrays["y_test"]).tolist() == TEST_COUNTS
    assert arrays["y_train"][0] == 5 and arrays["y_test"][0] == 7
    # the well-known MNIST statistics (mean 0.1307, std 0.3081 of the 60000 training images)
    values = np.arange(256) / 255
    weights = np.bincount(arrays["x_train"].ravel(), minlength=256) / arrays["x_train"].size
    mean = values @ weights
    assert round(mean, 4) == 0.1307 and round(np.sqrt(values ** 2 @ weights - mean ** 2), 4) == 0.3081


def test_shipped_checksums_verify():
    data = ds.load_image_dataset("mnist", verify=True)
    assert ds.content_checksums(load_npz(SHIPPED)) == ds.CONTENT_SHA256["mnist"]
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.x_train.dtype == np.uint8 and data.path == SHIPPED
    assert ds.datasets_command(["verify", "mnist"]) == 0


# ---------------------------------------------------------------------------------------------
# Encoding and split
# ---------------------------------------------------------------------------------------------

def test_image_probabilities_definition():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    images[7] = 0
    images[3, :, :] = 0
    images[3, 10, 10] = 1                       # one lit pixel: the largest normalised value
    probs = ds.image_probabilities(images)
    assert probs.dtype == np.float32 and probs.shape == (50, 784)
    np.testing.assert_array_equal(probs, reference_probabilities(images))
    np.testing.assert_array_equal(probs, ds.image_probabilities(images.reshape(50, 784)))
    assert probs.max() == 1.0 and probs[3, 10 * 28 + 10] == 1.0
    assert not np.isnan(probs).any() and not probs[7].any()
    sums = images.reshape(50, -1).sum(axis=1)
    lit = sums > 0
    np.testing.assert_allclose(probs[lit] / probs[lit].sum(axis=1, keepdims=True),
                               images.reshape(50, -1)[lit] / sums[lit, None], rtol=1e-6)
    assert not ds.image_probabilities(np.zeros((2, 784), np.uint8)).any()
    with pytest.raises(ValueError):
        ds.image_probabilities(np.zeros((2, 27, 28), np.uint8))


def test_split_shapes_and_factors(mnist, full_split):
    (tr, ytr), (va, yva), (te, yte) = full_split["train"], full_split["valid"], full_split["test"]
    assert tr.shape == (50000, 784) and va.shape == (10000, 784) and te.shape == (10000, 784)
    assert tr.dtype == va.dtype == te.dtype == np.float32
    assert ytr.dtype == yva.dtype == yte.dtype == np.int64
    np.testing.assert_array_equal(ytr, mnist.y_train[:50000])
    np.testing.assert_array_equal(yva, mnist.y_train[50000:])
    np.testing.assert_array_equal(yte, mnist.y_test)
    # one factor over training + validation, its own for the test split
    assert max(tr.max(), va.max()) == 1.0 and te.max() == 1.0
    np.testing.assert_array_equal(te, reference_probabilities(mnist.x_test))
    np.testing.assert_array_equal(np.concatenate([tr[:300], va[-300:]]),
                                  reference_probabilities(mnist.x_train, np.r_[0:300, 59700:60000]))


def test_subset_gives_same_rows(mnist, full_split):
    small = ds.split_image_dataset(mnist, 100, 37, 5)
    for key, n in (("train", 100), ("valid", 37), ("test", 5)):
        assert small[key][0].shape == (n, 784) and small[key][1].shape == (n,)
        np.testing.assert_array_equal(small[key][0], full_split[key][0][:n])
        np.testing.assert_array_equal(small[key][1], full_split[key][1][:n])


@pytest.mark.parametrize("sizes", [(0, 10, 10), (50001, 10, 10), (10, 10001, 10), (10, 10, 10001),
                                   (-1, 10, 10), (True, 10, 10), (10.0, 10, 10), ("10", 10, 10)])
def test_split_size_validation(mnist, sizes):
    with pytest.raises(UserError):
        ds.split_image_dataset(mnist, *sizes)


# ---------------------------------------------------------------------------------------------
# Missing and damaged files
# ---------------------------------------------------------------------------------------------

def test_missing_file_names_fetch_command(tmp_path):
    with pytest.raises(UserError, match="python -m lsm_core datasets fetch mnist") as info:
        ds.load_image_dataset("mnist", data_dir=tmp_path)
    assert str(tmp_path / "mnist.npz") in str(info.value)
    with pytest.raises(UserError, match="fetch fmnist"):
        ds.load_image_dataset("fmnist", data_dir=tmp_path)
    with pytest.raises(UserError, match="Unknown dataset"):
        ds.load_image_dataset("cifar", data_dir=tmp_path)


def test_damaged_files(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"this is not an npz file at all")
    with pytest.raises(UserError, match="damaged"):
        ds.load_image_dataset("mnist", data_dir=tmp_path)
    path.write_bytes(SHIPPED.read_bytes()[:100000])          # truncated download
    with pytest.raises(UserError, match="damaged"):
        ds.load_image_dataset("mnist", data_dir=tmp_path)


def test_wrong_layout_and_contents(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    good = {"x_train": mnist.x_train, "y_train": mnist.y_train.astype(np.uint8),
            "x_test": mnist.x_test, "y_test": mnist.y_test.astype(np.uint8)}
    bad_cases = [
        ({k: v for k, v in good.items() if k != "y_test"}, "lacks"),
        (dict(good, x_train=good["x_train"][:100]), "shape"),
        (dict(good, x_test=good["x_test"].astype(np.float32)), "dtype"),
        (dict(good, y_test=good["y_test"] + 1), "labels"),
    ]
    for arrays, message in bad_cases:
        np.savez(path, **arrays)
        with pytest.raises(UserError, match=message):
            ds.load_image_dataset("mnist", data_dir=tmp_path, verify=False)
    changed = good["x_train"].copy()
    changed[123, 4, 5] ^= 1
    np.savez(path, **dict(good, x_train=changed))
    with pytest.raises(UserError, match="checksums"):
        ds.load_image_dataset("mnist", data_dir=tmp_path, verify=True)
    assert ds.load_image_dataset("mnist", data_dir=tmp_path, verify=False).x_train[123, 4, 5] \
        == changed[123, 4, 5]


# ---------------------------------------------------------------------------------------------
# Building from the deeplearning.net pickle
# ---------------------------------------------------------------------------------------------

def test_build_from_tiny_pickle(tmp_path):
    rng = np.random.default_rng(1)
    ks = [rng.integers(0, 256, size=(n, 784)) for n in (5, 3, 4)]
    ks[0][0, :3] = [0, 255, 128]
    labels = [rng.integers(0, 10, size=n).astype(np.int64) for n in (5, 3, 4)]
    parts = tuple(((k / 256).astype(np.float32), y) for k, y in zip(ks, labels))
    source = write_pickle_gz(tmp_path / "mnist.pkl.gz", parts)
    out = ds.build_mnist_from_pickle(source, tmp_path / "out" / "mnist.npz", verify=False)
    arrays = load_npz(out)
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (8, 28, 28)
    np.testing.assert_array_equal(arrays["x_train"].reshape(8, 784), np.concatenate(ks[:2]))
    np.testing.assert_array_equal(arrays["x_test"].reshape(4, 784), ks[2])
    np.testing.assert_array_equal(arrays["y_train"], np.concatenate(labels[:2]))
    np.testing.assert_array_equal(arrays["y_test"], labels[2])
    assert arrays["x_train"][0, 0, :3].tolist() == [0, 255, 128]
    # with verification (the default, and the CLI's), a non-standard pickle is refused
    with pytest.raises(UserError):
        ds.build_mnist_from_pickle(source, tmp_path / "refused.npz")
    with pytest.raises(UserError):
        ds.datasets_command(["build-mnist", "--from", str(source), "--out", str(tmp_path / "x.npz")])
    assert not (tmp_path / "refused.npz").exists() and not (tmp_path / "x.npz").exists()


def test_build_refuses_bad_pickles(tmp_path):
    k255 = ((np.arange(784 * 2).reshape(2, 784) % 256) / 255).astype(np.float32)   # k/255 pixels
    y = np.zeros(2, np.int64)
    source = write_pickle_gz(tmp_path / "a.pkl.gz", ((k255, y), (k255, y), (k255, y)))
    with pytest.raises(UserError, match="k/256"):
        ds.build_mnist_from_pickle(source, tmp_path / "a.npz", verify=False)
    source = write_pickle_gz(tmp_path / "b.pkl.gz", print)                          # code, not data
    with pytest.raises(UserError, match="refusing"):
        ds.build_mnist_from_pickle(source, tmp_path / "b.npz", verify=False)
    (tmp_path / "c.pkl.gz").write_bytes(b"garbage")
    with pytest.raises(UserError):
        ds.build_mnist_from_pickle(tmp_path / "c.pkl.gz", tmp_path / "c.npz", verify=False)
    with pytest.raises(UserError, match="does not exist"):
        ds.build_mnist_from_pickle(tmp_path / "missing.pkl.gz", tmp_path / "d.npz")


# ---------------------------------------------------------------------------------------------
# Fetching
# ---------------------------------------------------------------------------------------------

def test_fetch_wrong_bytes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "_download", lambda url, timeout=None: b"not the mnist file")
    with pytest.raises(UserError, match="checksum"):
        ds.fetch_dataset("mnist", data_dir=tmp_path, log=lambda msg: None)
    assert not (tmp_path / "mnist.npz").exists()


def test_fetch_without_network(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(ds, "_download", offline)
    with pytest.raises(UserError, match="ships datasets/mnist.npz"):
        ds.fetch_dataset("mnist", data_dir=tmp_path, log=lambda msg: None)


def test_fetch_writes_verified_download(tmp_path, monkeypatch):
    blob = SHIPPED.read_bytes()
    monkeypatch.setattr(ds, "MNIST_KERAS_FILE_SHA256", hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(ds, "_download", lambda url, timeout=None: blob)
    (tmp_path / "mnist.npz").write_bytes(b"damaged")          # a damaged file is replaced
    messages = []
    path = ds.fetch_dataset("mnist", data_dir=tmp_path, log=messages.append)
    assert path.read_bytes() == blob and any("replacing" in m for m in messages)


def test_fetch_keeps_verified_file(monkeypatch):
    def no_download(url, timeout=None):
        raise AssertionError("must not download")
    monkeypatch.setattr(ds, "_download", no_download)
    messages = []
    assert ds.fetch_dataset("mnist", log=messages.append) == SHIPPED
    assert "nothing to do" in messages[0]


@pytest.mark.parametrize("name", ["fmnist", "nmnist"])
def test_fetch_not_yet_implemented(tmp_path, name):
    with pytest.raises(UserError, match="not implemented yet"):
        ds.fetch_dataset(name, data_dir=tmp_path)


def test_command_line_usage():
    assert ds.datasets_command(["--help"]) == 0
    assert ds.datasets_command(["bogus"]) == 2
    assert ds.datasets_command([]) == 2
