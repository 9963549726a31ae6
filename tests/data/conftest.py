"""Fixtures shared by the data tests: the shipped MNIST and its split, a small fake Fashion-MNIST."""
from __future__ import annotations


import numpy as np
import pytest

from lsm_core.data import encoding, fetch, images
from lsm_core.data.idx import write_idx



@pytest.fixture(scope="module")
def mnist():
    return images.load_image_dataset("mnist", verify=False)


@pytest.fixture(scope="module")
def full_split(mnist):
    return encoding.split_image_dataset(mnist, 50000, 10000, 10000)


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
    for key, name in fetch.FMNIST_FILES.items():
        write_idx(folder / (name + (".gz" if key.startswith("y") else "")), arrays[key])
    return folder, arrays


@pytest.fixture
def fake_checksums(monkeypatch, fake_fmnist):
    monkeypatch.setitem(images.CONTENT_SHA256, "fmnist", images.content_checksums(fake_fmnist[1]))
