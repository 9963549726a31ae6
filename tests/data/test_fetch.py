"""lsm_core.data.fetch: building MNIST from a pickle, fetching MNIST, Fashion-MNIST and N-MNIST, verifying N-MNIST."""
from __future__ import annotations

import gzip
import hashlib
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from lsm_core.cli.datasets import datasets_command
from lsm_core.data import events as ev
from lsm_core.data import fetch, images
from lsm_core.data.idx import encode_idx, write_idx
from lsm_core.errors import UserError
from lsm_core.storage import load_npz
from tests.data.fakes import offline, write_simulated

SHIPPED = Path(__file__).resolve().parents[2] / "datasets" / "mnist.npz"


def write_pickle_gz(path, parts):
    with gzip.open(path, "wb") as handle:
        pickle.dump(parts, handle, protocol=2)
    return path


def test_build_from_tiny_pickle(tmp_path):
    rng = np.random.default_rng(1)
    ks = [rng.integers(0, 256, size=(n, 784)) for n in (5, 3, 4)]
    ks[0][0, :3] = [0, 255, 128]
    labels = [rng.integers(0, 10, size=n).astype(np.int64) for n in (5, 3, 4)]
    parts = tuple(((k / 256).astype(np.float32), y) for k, y in zip(ks, labels))
    source = write_pickle_gz(tmp_path / "mnist.pkl.gz", parts)
    out = fetch.build_mnist_from_pickle(source, tmp_path / "out" / "mnist.npz", verify=False)
    arrays = load_npz(out)
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (8, 28, 28)
    np.testing.assert_array_equal(arrays["x_train"].reshape(8, 784), np.concatenate(ks[:2]))
    np.testing.assert_array_equal(arrays["x_test"].reshape(4, 784), ks[2])
    np.testing.assert_array_equal(arrays["y_train"], np.concatenate(labels[:2]))
    np.testing.assert_array_equal(arrays["y_test"], labels[2])
    assert arrays["x_train"][0, 0, :3].tolist() == [0, 255, 128]
    # with verification (the default, and the CLI's), a non-standard pickle is refused
    with pytest.raises(UserError):
        fetch.build_mnist_from_pickle(source, tmp_path / "refused.npz")
    with pytest.raises(UserError):
        datasets_command(["build-mnist", "--from", str(source), "--out", str(tmp_path / "x.npz")])
    assert not (tmp_path / "refused.npz").exists() and not (tmp_path / "x.npz").exists()


def test_build_refuses_bad_pickles(tmp_path):
    k255 = ((np.arange(784 * 2).reshape(2, 784) % 256) / 255).astype(np.float32)   # k/255 pixels
    y = np.zeros(2, np.int64)
    source = write_pickle_gz(tmp_path / "a.pkl.gz", ((k255, y), (k255, y), (k255, y)))
    with pytest.raises(UserError, match="k/256"):
        fetch.build_mnist_from_pickle(source, tmp_path / "a.npz", verify=False)
    source = write_pickle_gz(tmp_path / "b.pkl.gz", print)                          # code, not data
    with pytest.raises(UserError, match="refusing"):
        fetch.build_mnist_from_pickle(source, tmp_path / "b.npz", verify=False)
    (tmp_path / "c.pkl.gz").write_bytes(b"garbage")
    with pytest.raises(UserError):
        fetch.build_mnist_from_pickle(tmp_path / "c.pkl.gz", tmp_path / "c.npz", verify=False)
    with pytest.raises(UserError, match="does not exist"):
        fetch.build_mnist_from_pickle(tmp_path / "missing.pkl.gz", tmp_path / "d.npz")


def test_fetch_wrong_bytes_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "_download", lambda url, timeout=None: b"not the mnist file")
    with pytest.raises(UserError, match="checksum"):
        fetch.fetch_dataset("mnist", data_dir=tmp_path, log=lambda msg: None)
    assert not (tmp_path / "mnist.npz").exists()


def test_fetch_without_network(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.setattr(fetch, "_download", offline)
    with pytest.raises(UserError, match="ships datasets/mnist.npz"):
        fetch.fetch_dataset("mnist", data_dir=tmp_path, log=lambda msg: None)


def test_fetch_writes_verified_download(tmp_path, monkeypatch):
    blob = SHIPPED.read_bytes()
    monkeypatch.setattr(fetch, "MNIST_KERAS_FILE_SHA256", hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(fetch, "_download", lambda url, timeout=None: blob)
    (tmp_path / "mnist.npz").write_bytes(b"damaged")          # a damaged file is replaced
    messages = []
    path = fetch.fetch_dataset("mnist", data_dir=tmp_path, log=messages.append)
    assert path.read_bytes() == blob and any("replacing" in m for m in messages)


def test_fetch_keeps_verified_file(monkeypatch):
    def no_download(url, timeout=None):
        raise AssertionError("must not download")
    monkeypatch.setattr(fetch, "_download", no_download)
    messages = []
    assert fetch.fetch_dataset("mnist", log=messages.append) == SHIPPED
    assert "nothing to do" in messages[0]


def test_fmnist_from_a_source_folder(tmp_path, fake_fmnist, fake_checksums, monkeypatch):
    monkeypatch.setattr(fetch, "_download", offline)
    folder, arrays = fake_fmnist
    messages = []
    path = fetch.fetch_dataset("fmnist", data_dir=tmp_path, source_dir=folder, log=messages.append)
    assert path == tmp_path / "fmnist.npz" and "checksums match" in messages[0]
    data = images.load_image_dataset("fmnist", data_dir=tmp_path)
    for key in images.ARRAY_KEYS:
        np.testing.assert_array_equal(getattr(data, key), arrays[key])
    assert load_npz(path)["x_train"].dtype == np.uint8
    assert datasets_command(["fetch", "fmnist", "--data-dir", str(tmp_path)]) == 0     # kept: nothing to do
    assert datasets_command(["verify", "fmnist", "--data-dir", str(tmp_path)]) == 0


def test_fmnist_from_debians_folder_then_from_a_download(tmp_path, fake_fmnist, fake_checksums, monkeypatch):
    folder, arrays = fake_fmnist
    monkeypatch.setattr(fetch, "DEBIAN_FMNIST_DIR", folder)
    messages = []
    fetch.fetch_dataset("fmnist", data_dir=tmp_path / "a", log=messages.append)
    assert "Debian" in messages[0]
    files = {name: gzip.compress(encode_idx(arrays[key])) for key, name in fetch.FMNIST_FILES.items()}
    urls = []

    def download(url, timeout=None):
        urls.append(url)
        return files[url.rsplit("/", 1)[1][:-3]]

    monkeypatch.setattr(fetch, "DEBIAN_FMNIST_DIR", tmp_path / "no-such-folder")
    monkeypatch.setattr(fetch, "_download", download)
    fetch.fetch_dataset("fmnist", data_dir=tmp_path / "b", log=messages.append)
    assert urls[0] == "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"
    assert len(urls) == 4 and "Zalando" in messages[-1]
    np.testing.assert_array_equal(images.load_image_dataset("fmnist", tmp_path / "b").y_test, arrays["y_test"])


def test_fmnist_without_any_source_names_the_debian_package_and_source_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(fetch, "DEBIAN_FMNIST_DIR", tmp_path / "no-such-folder")
    monkeypatch.setattr(fetch, "_download", offline)
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist") as info:
        fetch.fetch_dataset("fmnist", data_dir=tmp_path, log=lambda m: None)
    assert "--source-dir" in str(info.value) and not (tmp_path / "fmnist.npz").exists()


def test_fmnist_checks(tmp_path, fake_fmnist, monkeypatch):
    folder, arrays = fake_fmnist
    with pytest.raises(UserError, match="checksums"):                 # made-up data is not Fashion-MNIST
        fetch.build_fmnist_from_idx(folder, tmp_path / "f.npz")
    monkeypatch.setitem(images.CONTENT_SHA256, "fmnist", images.content_checksums(arrays))
    bad = tmp_path / "bad"
    bad.mkdir()
    for key, name in fetch.FMNIST_FILES.items():
        write_idx(bad / name, np.zeros(60000, np.uint8) if key == "y_train" else arrays[key])
    with pytest.raises(UserError, match="class counts"):
        fetch.build_fmnist_from_idx(bad, tmp_path / "f.npz")
    (bad / fetch.FMNIST_FILES["y_test"]).unlink()
    with pytest.raises(UserError, match="lacks the Fashion-MNIST IDX files t10k-labels-idx1-ubyte"):
        fetch.build_fmnist_from_idx(bad, tmp_path / "f.npz")
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.skipif(not (fetch.DEBIAN_FMNIST_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_matches_the_recorded_checksums():
    from lsm_core.data.idx import read_idx
    files = fetch._idx_source_files(fetch.DEBIAN_FMNIST_DIR)
    arrays = fetch._fmnist_arrays({key: read_idx(path) for key, path in files.items()}, "Debian")
    assert arrays["y_train"][:3].tolist() == [9, 0, 0] and arrays["y_test"][:3].tolist() == [9, 2, 1]


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


def test_fetch_nmnist_downloads_through_tonic_once(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "TRAIN_POOL", 10)
    monkeypatch.setattr(ev, "N_TRAIN_RECORDINGS", 12)
    monkeypatch.setattr(ev, "N_TEST_RECORDINGS", 3)
    calls = []

    def download(save_to, log):
        calls.append(save_to)
        write_tonic_layout(save_to, range(1, 13), range(1, 4))

    monkeypatch.setattr(fetch, "_tonic_download", download)
    messages = []
    fetch.fetch_dataset("nmnist", data_dir=tmp_path, log=messages.append)
    assert calls == [tmp_path / "nmnist"]
    assert any("train: 10 recordings" in m for m in messages) and any("valid: 2 recordings" in m for m in messages)
    fetch.fetch_dataset("nmnist", data_dir=tmp_path, log=messages.append)
    assert len(calls) == 1 and "nothing to download" in messages[-1]


def test_fetch_nmnist_without_network_or_with_a_source_dir(tmp_path, monkeypatch):
    def no_network(save_to, log):
        (save_to / "NMNIST").mkdir(parents=True)          # as tonic does before it downloads
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(fetch, "_tonic_download", no_network)
    with pytest.raises(UserError, match="Downloading N-MNIST through tonic failed") as info:
        fetch.fetch_dataset("nmnist", data_dir=tmp_path, log=lambda m: None)
    assert "simulate-nmnist" in str(info.value) and "--simulated-nmnist" in str(info.value)
    assert list(tmp_path.iterdir()) == []                 # the failed download leaves no empty folders
    with pytest.raises(UserError, match="takes no --source-dir"):
        fetch.fetch_dataset("nmnist", data_dir=tmp_path, source_dir=tmp_path)


def test_verify_nmnist(tmp_path, capsys):
    write_simulated(tmp_path)
    assert datasets_command(["verify", "nmnist", "--simulated", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train: 10 recordings" in out and "SIMULATED" in out and "last sixth" in out
    with pytest.raises(UserError, match="datasets fetch nmnist"):
        datasets_command(["verify", "nmnist", "--data-dir", str(tmp_path)])
