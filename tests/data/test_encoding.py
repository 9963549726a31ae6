"""lsm_core.data.encoding: images as spike probabilities (docs/model.md#images-as-bernoulli-inputs) and the
standard split."""
from __future__ import annotations


import numpy as np
import pytest

from lsm_core.data import encoding
from lsm_core.errors import UserError



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


def test_image_probabilities_definition():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    images[7] = 0
    images[3, :, :] = 0
    images[3, 10, 10] = 1                       # one lit pixel: the largest normalised value
    probs = encoding.image_probabilities(images)
    assert probs.dtype == np.float32 and probs.shape == (50, 784)
    np.testing.assert_array_equal(probs, reference_probabilities(images))
    np.testing.assert_array_equal(probs, encoding.image_probabilities(images.reshape(50, 784)))
    assert probs.max() == 1.0 and probs[3, 10 * 28 + 10] == 1.0
    assert not np.isnan(probs).any() and not probs[7].any()
    sums = images.reshape(50, -1).sum(axis=1)
    lit = sums > 0
    np.testing.assert_allclose(probs[lit] / probs[lit].sum(axis=1, keepdims=True),
                               images.reshape(50, -1)[lit] / sums[lit, None], rtol=1e-6)
    assert not encoding.image_probabilities(np.zeros((2, 784), np.uint8)).any()
    with pytest.raises(ValueError):
        encoding.image_probabilities(np.zeros((2, 27, 28), np.uint8))


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
    small = encoding.split_image_dataset(mnist, 100, 37, 5)
    for key, n in (("train", 100), ("valid", 37), ("test", 5)):
        assert small[key][0].shape == (n, 784) and small[key][1].shape == (n,)
        np.testing.assert_array_equal(small[key][0], full_split[key][0][:n])
        np.testing.assert_array_equal(small[key][1], full_split[key][1][:n])


@pytest.mark.parametrize("sizes", [(0, 10, 10), (50001, 10, 10), (10, 10001, 10), (10, 10, 10001),
                                   (-1, 10, 10), (True, 10, 10), (10.0, 10, 10), ("10", 10, 10)])
def test_split_size_validation(mnist, sizes):
    with pytest.raises(UserError):
        encoding.split_image_dataset(mnist, *sizes)


def test_image_splits_cover_the_standard_split_batch_by_batch(mnist, full_split):
    splits = encoding.image_splits(mnist)
    assert [len(splits[k]) for k in ("train", "valid", "test")] == [50000, 10000, 10000]
    rows = np.array([9999, 3, 0])
    for key in ("train", "valid", "test"):
        np.testing.assert_array_equal(splits[key].inputs(rows), full_split[key][0][rows])
        np.testing.assert_array_equal(splits[key].head(4).labels, full_split[key][1][:4])
        assert not splits[key].simulated


def test_image_split_of_its_own_images_encodes_as_image_probabilities():
    images = np.random.default_rng(3).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    images[2] = 0                                                    # an all-zero image stays zero
    split = encoding.ImageSplit.of_images(images, np.arange(7))
    assert len(split) == 7 and split.labels.dtype == np.int64
    np.testing.assert_array_equal(split.inputs([4, 2, 0]), encoding.image_probabilities(images)[[4, 2, 0]])
