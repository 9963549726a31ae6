"""Image datasets (docs/file-formats.md#mnist-and-fashion-mnist): where their files are, loading them,
checking their layout and contents.

MNIST and Fashion-MNIST live in `datasets/` in Keras's npz layout: `x_train` uint8 [60000, 28, 28],
`y_train` [60000], `x_test` uint8 [10000, 28, 28], `y_test` [10000].  `load_image_dataset` reads one and
checks it (keys, shapes, dtypes, labels, and the recorded SHA-256 of its contents); turning images into
inputs is `encoding.py`, obtaining the files `fetch.py`.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lsm_core.config import DATASETS, N_CLASSES, PAPER
from lsm_core.errors import UserError
from lsm_core.places import data_dir as default_data_dir
from lsm_core.storage import load_npz

IMAGE_SHAPE = (28, 28)
N_PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1]
N_TRAIN_FILE = 60000      # images in x_train: training pool 0..49999, validation 50000..59999
N_TEST_FILE = 10000
TRAIN_POOL = PAPER.protocol.train_samples      # 50000: validation starts here
VALID_POOL = N_TRAIN_FILE - TRAIN_POOL         # 10000
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

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
    spec = dataset_spec(name)
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
    spec = dataset_spec(name)
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
    arrays = read_image_npz(path, name)
    checked = check_image_arrays(arrays, f"{name} data file {path}", fix_hint(name))
    if verify:
        verify_contents(name, checked, f"{name} data file {path}")
    return ImageData(checked["x_train"], checked["y_train"].astype(np.int64),
                     checked["x_test"], checked["y_test"].astype(np.int64), name=name, path=path)


def dataset_spec(name: str):
    if name not in DATASETS:
        raise UserError(f"Unknown dataset {name!r}; the datasets are: {', '.join(DATASETS)}.")
    return DATASETS[name]


def fix_hint(name: str) -> str:
    return (f"Replace it with `python -m lsm_core datasets fetch {name}` (or restore it with "
            f"`git checkout -- datasets/{DATASETS[name].file}` if it is the shipped file).")


def read_image_npz(source, name: str) -> dict:
    """Read an npz (path or bytes) into a dict of arrays, checking every member's zip CRC-32;
    unreadable -> UserError."""
    label = f"{name} data file {source}" if not isinstance(source, bytes) else f"downloaded {name} file"
    try:
        return load_npz(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Exception as exc:  # zipfile.BadZipFile (bad CRC-32, cut short), zlib.error, ValueError, OSError, ...
        raise UserError(f"The {label} is damaged or is not an npz file ({type(exc).__name__}: {exc}). "
                        f"{fix_hint(name)}") from exc


def check_image_arrays(arrays: dict, label: str, hint: str) -> dict:
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


def verify_contents(name: str, arrays: dict, label: str) -> None:
    expected = CONTENT_SHA256.get(name)
    if expected is None:
        return
    actual = content_checksums(arrays)
    bad = [key for key in ARRAY_KEYS if actual[key] != expected[key]]
    if bad:
        raise UserError(f"The {label} has the right layout but its contents differ from the recorded "
                        f"{name} checksums ({', '.join(bad)} mismatch), so it is not the standard "
                        f"{name} data. {fix_hint(name)}")
