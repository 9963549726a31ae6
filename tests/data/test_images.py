"""Tests of lsm_core.datasets: the shipped MNIST file, the image encoding
(docs/model.md#images-as-bernoulli-inputs), the split, errors."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from damage import DAMAGES, damage
from lsm_core import datasets as ds
from lsm_core.datasets_command import datasets_command
from lsm_core import events as ev
from lsm_core.errors import UserError
from lsm_core.idx import encode_idx, write_idx
from lsm_core.storage import atomic_save_npz, load_npz

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SHIPPED = Path(__file__).resolve().parents[1] / "datasets" / "mnist.npz"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist():
    return ds.load_image_dataset("mnist", verify=False)


@pytest.fixture(scope="module")
def full_split(mnist):
    return ds.split_image_dataset(mnist, 50000, 10000, 10000)


def reference_probabilities(images, rows=None):
    """docs/model.md#images-as-bernoulli-inputs written out literally: x / sum(x) per image, then / the
    largest value of the split.

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
    assert datasets_command(["verify", "mnist"]) == 0


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


@pytest.fixture
def tiny_standard_split(monkeypatch):
    """The standard split scaled down to 60 training (50 + 10 validation) and 10 test images, with the
    checksums of made-up contents recorded for mnist and fmnist; returns the four arrays."""
    rng = np.random.default_rng(21)
    arrays = {"x_train": rng.integers(0, 256, (60, 28, 28), dtype=np.uint8),
              "y_train": (np.arange(60) % 10).astype(np.uint8),
              "x_test": rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), "y_test": np.arange(10, dtype=np.uint8)}
    for name, value in (("N_TRAIN_FILE", 60), ("N_TEST_FILE", 10), ("TRAIN_POOL", 50), ("VALID_POOL", 10)):
        monkeypatch.setattr(ds, name, value)
    for name in ("mnist", "fmnist"):
        monkeypatch.setitem(ds.CONTENT_SHA256, name, ds.content_checksums(arrays))
    return arrays


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", ["mnist", "fmnist"])
def test_a_damaged_data_file_names_the_file_and_the_fix(tmp_path, tiny_standard_split, name, how, compressed):
    path = tmp_path / f"{name}.npz"
    atomic_save_npz(path, compressed=compressed, **tiny_standard_split)
    assert len(ds.load_run_data(name, tmp_path, log=None).splits["train"]) == 50
    damage(path, how)
    fetch = f"python -m lsm_core datasets fetch {name}"
    loads = [lambda: ds.load_image_dataset(name, tmp_path, verify=True),
             lambda: ds.load_image_dataset(name, tmp_path, verify=False),      # zip's CRC-32 alone catches a flip
             lambda: datasets_command(["verify", name, "--data-dir", str(tmp_path)])]
    if how != "delete":                # load_run_data would fetch a missing fmnist.npz instead
        loads.append(lambda: ds.load_run_data(name, tmp_path, log=None))
    for load in loads:
        with pytest.raises(UserError) as info:
            load()
        message = str(info.value)
        assert str(path) in message and fetch in message, message
        assert ("does not exist" if how == "delete" else "is damaged or is not an npz file") in message


def test_datasets_verify_on_a_damaged_file_is_one_line_on_stderr_and_exit_status_2(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(bytes(1000))
    result = subprocess.run([sys.executable, "-m", "lsm_core", "datasets", "verify", "mnist", "--data-dir",
                             str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and str(path) in result.stderr and "datasets fetch mnist" in result.stderr


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
        datasets_command(["build-mnist", "--from", str(source), "--out", str(tmp_path / "x.npz")])
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


def test_command_line_usage():
    assert datasets_command(["--help"]) == 0
    assert datasets_command(["bogus"]) == 2
    assert datasets_command([]) == 2


def test_image_splits_cover_the_standard_split_batch_by_batch(mnist, full_split):
    splits = ds.image_splits(mnist)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [50000, 10000, 10000]
    rows = np.array([9999, 3, 0])
    for key in ("train", "valid", "test"):
        np.testing.assert_array_equal(splits[key].inputs(rows), full_split[key][0][rows])
        np.testing.assert_array_equal(splits[key].head(4).labels, full_split[key][1][:4])
        assert not splits[key].simulated


# ---------------------------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_fmnist(tmp_path_factory):
    """A folder with the four Fashion-MNIST IDX files (some gzipped) holding made-up, balanced data;
    returns (folder, arrays)."""
    folder = tmp_path_factory.mktemp("fmnist_idx")
    arrays = {"x_train": np.zeros((60000, 28, 28), np.uint8), "y_train": (np.arange(60000) % 10).astype(np.uint8),
              "x_test": np.zeros((10000, 28, 28), np.uint8), "y_test": (np.arange(10000) * 7 % 10).astype(np.uint8)}
    for key in ("x_train", "x_test"):
        n = len(arrays[key])
        arrays[key][np.arange(n), np.arange(n) % 28, np.arange(n) // 28 % 28] = np.arange(n) % 251 + 1
    for key, name in ds.FMNIST_FILES.items():
        write_idx(folder / (name + (".gz" if key.startswith("y") else "")), arrays[key])
    return folder, arrays


@pytest.fixture
def fake_checksums(monkeypatch, fake_fmnist):
    monkeypatch.setitem(ds.CONTENT_SHA256, "fmnist", ds.content_checksums(fake_fmnist[1]))


def offline(url, timeout=None):
    raise urllib.error.URLError("Name or service not known")


def test_fmnist_from_a_source_folder(tmp_path, fake_fmnist, fake_checksums, monkeypatch):
    monkeypatch.setattr(ds, "_download", offline)
    folder, arrays = fake_fmnist
    messages = []
    path = ds.fetch_dataset("fmnist", data_dir=tmp_path, source_dir=folder, log=messages.append)
    assert path == tmp_path / "fmnist.npz" and "checksums match" in messages[0]
    data = ds.load_image_dataset("fmnist", data_dir=tmp_path)
    for key in ds.ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(data, key), arrays[key])
    assert load_npz(path)["x_train"].dtype == np.uint8
    assert datasets_command(["fetch", "fmnist", "--data-dir", str(tmp_path)]) == 0     # kept: nothing to do
    assert datasets_command(["verify", "fmnist", "--data-dir", str(tmp_path)]) == 0


def test_fmnist_from_debians_folder_then_from_a_download(tmp_path, fake_fmnist, fake_checksums, monkeypatch):
    folder, arrays = fake_fmnist
    monkeypatch.setattr(ds, "DEBIAN_FMNIST_DIR", folder)
    messages = []
    ds.fetch_dataset("fmnist", data_dir=tmp_path / "a", log=messages.append)
    assert "Debian" in messages[0]
    files = {name: gzip.compress(encode_idx(arrays[key])) for key, name in ds.FMNIST_FILES.items()}
    urls = []

    def download(url, timeout=None):
        urls.append(url)
        return files[url.rsplit("/", 1)[1][:-3]]

    monkeypatch.setattr(ds, "DEBIAN_FMNIST_DIR", tmp_path / "no-such-folder")
    monkeypatch.setattr(ds, "_download", download)
    ds.fetch_dataset("fmnist", data_dir=tmp_path / "b", log=messages.append)
    assert urls[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"
    assert len(urls) == 4 and "Zalando" in messages[-1]
    np.testing.assert_array_equal(ds.load_image_dataset("fmnist", tmp_path / "b").y_test, arrays["y_test"])


def test_fmnist_without_any_source_names_the_debian_package_and_source_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(ds, "DEBIAN_FMNIST_DIR", tmp_path / "no-such-folder")
    monkeypatch.setattr(ds, "_download", offline)
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist") as info:
        ds.fetch_dataset("fmnist", data_dir=tmp_path, log=lambda m: None)
    assert "--source-dir" in str(info.value) and not (tmp_path / "fmnist.npz").exists()


def test_fmnist_checks(tmp_path, fake_fmnist, monkeypatch):
    folder, arrays = fake_fmnist
    with pytest.raises(UserError, match="checksums"):                 # made-up data is not Fashion-MNIST
        ds.build_fmnist_from_idx(folder, tmp_path / "f.npz")
    monkeypatch.setitem(ds.CONTENT_SHA256, "fmnist", ds.content_checksums(arrays))
    bad = tmp_path / "bad"
    bad.mkdir()
    for key, name in ds.FMNIST_FILES.items():
        write_idx(bad / name, np.zeros(60000, np.uint8) if key == "y_train" else arrays[key])
    with pytest.raises(UserError, match="class counts"):
        ds.build_fmnist_from_idx(bad, tmp_path / "f.npz")
    (bad / ds.FMNIST_FILES["y_test"]).unlink()
    with pytest.raises(UserError, match="lacks the Fashion-MNIST IDX files t10k-labels-idx1-ubyte"):
        ds.build_fmnist_from_idx(bad, tmp_path / "f.npz")
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.skipif(not (ds.DEBIAN_FMNIST_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_matches_the_recorded_checksums():
    from lsm_core.idx import read_idx
    files = ds._idx_source_files(ds.DEBIAN_FMNIST_DIR)
    arrays = ds._fmnist_arrays({key: read_idx(path) for key, path in files.items()}, "Debian")
    assert arrays["y_train"][:3].tolist() == [9, 0, 0] and arrays["y_test"][:3].tolist() == [9, 2, 1]


# ---------------------------------------------------------------------------------------------
# N-MNIST: fetch through tonic, verify, a run's data
# ---------------------------------------------------------------------------------------------

def write_tonic_layout(save_to, train_numbers, test_numbers):
    rng = np.random.default_rng(0)
    for part, numbers in (("Train", train_numbers), ("Test", test_numbers)):
        for number in numbers:
            folder = save_to / "NMNIST" / part / str(number % 10)
            folder.mkdir(parents=True, exist_ok=True)
            n = 40
            events = ev.make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n),
                                    np.sort(rng.integers(0, 300_000, n)))
            ev.write_bin(folder / f"{number:05d}.bin", events)


def write_simulated(data_dir, n_train=12, n_test=3):
    rng = np.random.default_rng(1)
    root = data_dir / "nmnist_simulated"
    for folder, numbers in (("train_all", range(1, n_train + 1)), ("test_all", range(1, n_test + 1))):
        (root / folder).mkdir(parents=True)
        for number in numbers:
            ev.write_bin(root / folder / f"{number:05d}.bin", ev.make_events([1], [2], [1], [rng.integers(0, 3e5)]))
        (root / folder / "labels.csv").write_text("file,label\n" + "".join(f"{n:05d}.bin,{n % 10}\n" for n in numbers))
    (root / "SIMULATED.json").write_text('{"seed": 1}')


def test_fetch_nmnist_downloads_through_tonic_once(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "TRAIN_POOL", 10)
    monkeypatch.setattr(ev, "N_TRAIN_RECORDINGS", 12)
    monkeypatch.setattr(ev, "N_TEST_RECORDINGS", 3)
    calls = []

    def download(save_to, log):
        calls.append(save_to)
        write_tonic_layout(save_to, range(1, 13), range(1, 4))

    monkeypatch.setattr(ds, "_tonic_download", download)
    messages = []
    ds.fetch_dataset("nmnist", data_dir=tmp_path, log=messages.append)
    assert calls == [tmp_path / "nmnist"]
    assert any("train: 10 recordings" in m for m in messages) and any("valid: 2 recordings" in m for m in messages)
    ds.fetch_dataset("nmnist", data_dir=tmp_path, log=messages.append)
    assert len(calls) == 1 and "nothing to download" in messages[-1]


def test_fetch_nmnist_without_network_or_with_a_source_dir(tmp_path, monkeypatch):
    def no_network(save_to, log):
        (save_to / "NMNIST").mkdir(parents=True)          # as tonic does before it downloads
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(ds, "_tonic_download", no_network)
    with pytest.raises(UserError, match="Downloading N-MNIST through tonic failed") as info:
        ds.fetch_dataset("nmnist", data_dir=tmp_path, log=lambda m: None)
    assert "simulate-nmnist" in str(info.value) and "--simulated-nmnist" in str(info.value)
    assert list(tmp_path.iterdir()) == []                 # the failed download leaves no empty folders
    with pytest.raises(UserError, match="takes no --source-dir"):
        ds.fetch_dataset("nmnist", data_dir=tmp_path, source_dir=tmp_path)


def test_verify_nmnist(tmp_path, capsys):
    write_simulated(tmp_path)
    assert datasets_command(["verify", "nmnist", "--simulated", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train: 10 recordings" in out and "SIMULATED" in out and "last sixth" in out
    with pytest.raises(UserError, match="datasets fetch nmnist"):
        datasets_command(["verify", "nmnist", "--data-dir", str(tmp_path)])


def test_load_run_data_fetches_what_can_be_fetched(tmp_path, fake_fmnist, fake_checksums, monkeypatch):
    monkeypatch.setattr(ds, "DEBIAN_FMNIST_DIR", fake_fmnist[0])
    messages = []
    data = ds.load_run_data("fmnist", tmp_path, log=messages.append)
    assert "fetching it" in messages[0] and (tmp_path / "fmnist.npz").exists()
    assert len(data.splits["train"]) == 50000 and data.info["simulated"] is False
    downloads = []
    monkeypatch.setattr(ds, "_tonic_download", lambda save_to, log: downloads.append(save_to) or offline(""))
    with pytest.raises(UserError, match="tonic failed"):
        ds.load_run_data("nmnist", tmp_path, log=messages.append)
    with pytest.raises(UserError, match="datasets simulate-nmnist"):       # simulated data is never fetched
        ds.load_run_data("nmnist", tmp_path, simulated=True, log=messages.append)
    assert len(downloads) == 1
    write_simulated(tmp_path)
    data = ds.load_run_data("nmnist", tmp_path, simulated=True)
    assert data.info["simulated_marker"] == {"seed": 1} and data.info["recordings"] == {"train": 10, "valid": 2,
                                                                                         "test": 3}
    assert all(split.simulated for split in data.splits.values()) and "SIMULATED" in data.notes[0]
    with pytest.raises(UserError, match="only for N-MNIST"):
        ds.load_run_data("mnist", tmp_path, simulated=True)


def test_image_split_of_its_own_images_encodes_as_image_probabilities():
    images = np.random.default_rng(3).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    images[2] = 0                                                    # an all-zero image stays zero
    split = ds.ImageSplit.of_images(images, np.arange(7))
    assert len(split) == 7 and split.labels.dtype == np.int64
    np.testing.assert_array_equal(split.inputs([4, 2, 0]), ds.image_probabilities(images)[[4, 2, 0]])
