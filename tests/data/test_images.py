"""lsm_core.data.images: the shipped MNIST file, loading and checking image datasets, missing and damaged files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsm_core.cli.datasets import datasets_command
from lsm_core.data import encoding, images, run_data
from lsm_core.errors import UserError
from lsm_core.storage import atomic_save_npz, load_npz
from tests.damage import DAMAGES, damage

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
SHIPPED = Path(__file__).resolve().parents[2] / "datasets" / "mnist.npz"


def test_shipped_mnist_layout():
    arrays = load_npz(SHIPPED)
    assert sorted(arrays) == sorted(images.ARRAY_KEYS)
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
    data = images.load_image_dataset("mnist", verify=True)
    assert images.content_checksums(load_npz(SHIPPED)) == images.CONTENT_SHA256["mnist"]
    assert data.y_train.dtype == np.int64 and data.y_test.dtype == np.int64
    assert data.x_train.dtype == np.uint8 and data.path == SHIPPED
    assert datasets_command(["verify", "mnist"]) == 0


def test_missing_file_names_fetch_command(tmp_path):
    with pytest.raises(UserError, match="python -m lsm_core datasets fetch mnist") as info:
        images.load_image_dataset("mnist", data_dir=tmp_path)
    assert str(tmp_path / "mnist.npz") in str(info.value)
    with pytest.raises(UserError, match="fetch fmnist"):
        images.load_image_dataset("fmnist", data_dir=tmp_path)
    with pytest.raises(UserError, match="Unknown dataset"):
        images.load_image_dataset("cifar", data_dir=tmp_path)


def test_damaged_files(tmp_path):
    path = tmp_path / "mnist.npz"
    path.write_bytes(b"this is not an npz file at all")
    with pytest.raises(UserError, match="damaged"):
        images.load_image_dataset("mnist", data_dir=tmp_path)
    path.write_bytes(SHIPPED.read_bytes()[:100000])          # truncated download
    with pytest.raises(UserError, match="damaged"):
        images.load_image_dataset("mnist", data_dir=tmp_path)


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
            images.load_image_dataset("mnist", data_dir=tmp_path, verify=False)
    changed = good["x_train"].copy()
    changed[123, 4, 5] ^= 1
    np.savez(path, **dict(good, x_train=changed))
    with pytest.raises(UserError, match="checksums"):
        images.load_image_dataset("mnist", data_dir=tmp_path, verify=True)
    assert images.load_image_dataset("mnist", data_dir=tmp_path, verify=False).x_train[123, 4, 5] \
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
        for module in (images, encoding):          # the split's sizes, where they are checked and used
            monkeypatch.setattr(module, name, value)
    for name in ("mnist", "fmnist"):
        monkeypatch.setitem(images.CONTENT_SHA256, name, images.content_checksums(arrays))
    return arrays


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("name", ["mnist", "fmnist"])
def test_a_damaged_data_file_names_the_file_and_the_fix(tmp_path, tiny_standard_split, name, how, compressed):
    path = tmp_path / f"{name}.npz"
    atomic_save_npz(path, compressed=compressed, **tiny_standard_split)
    assert len(run_data.load_run_data(name, tmp_path, log=None).splits["train"]) == 50
    damage(path, how)
    fetch = f"python -m lsm_core datasets fetch {name}"
    loads = [lambda: images.load_image_dataset(name, tmp_path, verify=True),
             lambda: images.load_image_dataset(name, tmp_path, verify=False),      # zip's CRC-32 alone catches a flip
             lambda: datasets_command(["verify", name, "--data-dir", str(tmp_path)])]
    if how != "delete":                # load_run_data would fetch a missing fmnist.npz instead
        loads.append(lambda: run_data.load_run_data(name, tmp_path, log=None))
    for load in loads:
        with pytest.raises(UserError) as info:
            load()
        message = str(info.value)
        assert str(path) in message and fetch in message, message
        assert ("does not exist" if how == "delete" else "is damaged or is not an npz file") in message
