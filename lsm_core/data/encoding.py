"""Images as inputs (docs/model.md#images-as-bernoulli-inputs): per-millisecond spike probabilities, and the
standard split of an image dataset into training pool, validation and test.

Each image is divided by the sum of its pixels, then the whole normalisation group by its largest
resulting value, in float64.  `ImageSplit` keeps the pixels and encodes batch by batch, so a run never
holds 60000 float32 images at once.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsm_core.data.images import (
    IMAGE_SHAPE,
    N_PIXELS,
    N_TEST_FILE,
    N_TRAIN_FILE,
    TRAIN_POOL,
    VALID_POOL,
    ImageData,
    fix_hint,
)
from lsm_core.errors import UserError

_CHUNK = 10000  # rows converted at a time (bounds the float64 temporary to ~63 MB)


def _row_sums_and_factor(flat: np.ndarray):
    """Per-image pixel sums float64 [n] (zeros -> 1) and the split factor max_i(max_j x_ij / s_i)."""
    sums = flat.sum(axis=1, dtype=np.float64)
    sums[sums == 0] = 1.0                      # an all-zero image stays all zero
    if flat.shape[0] == 0:
        return sums, 1.0
    # x/s is monotonic in x, so max(x)/s equals the largest element of the row x/s bit for bit.
    factor = float((flat.max(axis=1).astype(np.float64) / sums).max())
    return sums, (factor if factor > 0 else 1.0)


def _scaled(flat: np.ndarray, sums: np.ndarray, factor: float) -> np.ndarray:
    """(x_i / s_i) / factor for each row, in float64, returned as float32 [n, 784]."""
    out = np.empty(flat.shape, dtype=np.float32)
    for start in range(0, flat.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        out[rows] = (flat[rows].astype(np.float64) / sums[rows, None]) / factor
    return out


def _flatten(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3 and images.shape[1:] == IMAGE_SHAPE:
        return images.reshape(images.shape[0], N_PIXELS)
    if images.ndim == 2 and images.shape[1] == N_PIXELS:
        return images
    raise ValueError(f"expected images of shape [n, 28, 28] or [n, 784], got {list(images.shape)}")


def image_probabilities(images) -> np.ndarray:
    """Spike probabilities per ms, float32 [n, 784] in [0, 1], from pixels [n, 28, 28] or [n, 784].

    Each image is divided by the sum of its pixels, then the whole array by its largest resulting
    value (computed in float64).  An all-zero image gives a row of zeros.
    """
    flat = _flatten(images)
    sums, factor = _row_sums_and_factor(flat)
    return _scaled(flat, sums, factor)


@dataclass(frozen=True, eq=False)
class ImageSplit:
    """One split of an image dataset, encoded batch by batch (docs/model.md#images-as-bernoulli-inputs):
    pixels uint8 [n, 784], their sums float64 [n] (0 -> 1), the split's normalisation factor, labels
    int64 [n].  `inputs(rows)` gives
    exactly the rows of `image_probabilities` over the whole normalisation group."""

    pixels: np.ndarray
    sums: np.ndarray
    factor: float
    labels: np.ndarray
    simulated: bool = False           # images are never simulated (same interface as EventSplit)

    @classmethod
    def of_images(cls, images, labels) -> ImageSplit:
        """A split that is its own normalisation group: pixels [n, 28, 28] or [n, 784]; `inputs(rows)` is
        then `image_probabilities(images)[rows]`, bit for bit."""
        flat = _flatten(images)
        sums, factor = _row_sums_and_factor(flat)
        return cls(flat, sums, factor, np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> ImageSplit:
        """The first `n` images."""
        return ImageSplit(self.pixels[:n], self.sums[:n], self.factor, self.labels[:n])

    def inputs(self, rows, duration_ms: int | None = None, start_ms=0) -> np.ndarray:
        """Spike probabilities per ms, float32 [len(rows), 784], of the images at positions `rows`.
        (`duration_ms` and `start_ms` concern event recordings; an image is the same every ms.)"""
        rows = np.asarray(rows, np.int64).reshape(-1)
        return _scaled(self.pixels[rows], self.sums[rows], self.factor)


def image_splits(data: ImageData) -> dict:
    """The whole standard split {"train": 50000, "valid": 10000, "test": 10000 images} as ImageSplits.

    train = x_train[0:50000], valid = x_train[50000:60000], test = x_test.  Training and validation
    share one normalisation factor computed over all 60000 training-file images (the paper's tools
    normalise the full split), the test split has its own over all 10000 test images; so a sample's
    probabilities do not depend on how many samples a run uses.
    """
    flat_train = _flatten(data.x_train)
    flat_test = _flatten(data.x_test)
    if flat_train.shape[0] < N_TRAIN_FILE or flat_test.shape[0] < N_TEST_FILE:
        raise UserError(f"The {data.name} data holds {flat_train.shape[0]} training and "
                        f"{flat_test.shape[0]} test images; the standard split needs "
                        f"{N_TRAIN_FILE} and {N_TEST_FILE}. {fix_hint(data.name)}")
    sums_tv, factor_tv = _row_sums_and_factor(flat_train[:N_TRAIN_FILE])
    sums_te, factor_te = _row_sums_and_factor(flat_test[:N_TEST_FILE])

    def part(flat, sums, factor, labels, rows):
        return ImageSplit(flat[rows], sums[rows], factor, np.asarray(labels[rows], dtype=np.int64))

    return {"train": part(flat_train, sums_tv, factor_tv, data.y_train, slice(0, TRAIN_POOL)),
            "valid": part(flat_train, sums_tv, factor_tv, data.y_train, slice(TRAIN_POOL, N_TRAIN_FILE)),
            "test": part(flat_test, sums_te, factor_te, data.y_test, slice(0, N_TEST_FILE))}


def split_image_dataset(data: ImageData, train_samples: int, valid_samples: int,
                        test_samples: int) -> dict:
    """The standard split as {"train"|"valid"|"test": (probabilities float32 [n, 784], labels int64 [n])}.

    train = x_train[0:train_samples], valid = x_train[50000:50000+valid_samples],
    test = x_test[0:test_samples], normalised as in `image_splits`.
    """
    sizes = {"train": _check_size("train_samples", train_samples, TRAIN_POOL),
             "valid": _check_size("valid_samples", valid_samples, VALID_POOL),
             "test": _check_size("test_samples", test_samples, N_TEST_FILE)}
    return {name: (split.inputs(np.arange(sizes[name])), split.labels[:sizes[name]])
            for name, split in image_splits(data).items()}


def _check_size(name: str, value, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{name} must be a whole number from 1 to {maximum}, got {value!r}.")
    if not 1 <= value <= maximum:
        raise UserError(f"{name} = {value} is out of range: the standard split allows 1 to {maximum} "
                        f"samples. Choose a value in that range (e.g. --{name.replace('_', '-')} "
                        f"{maximum}).")
    return int(value)
