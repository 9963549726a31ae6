"""Where the toolkit's three folders are when no option names them: datasets, liquids and run folders.

The rule, the same for the scripts, the `python -m lsm_core` / `lsm-core` commands and the Python API:

1. an option or argument (`--data-dir`, `--networks-dir`, `--output-root`; `data_dir=` ... in Python);
2. else an environment variable: LSM_CORE_DATA_DIR, LSM_CORE_NETWORKS_DIR, LSM_CORE_OUTPUT_ROOT;
3. else `datasets/`, `networks/` and `train_data/` in the current directory.

Run from the repository root (as the README does), that is the repository's own folders, with the
shipped MNIST data; an installed package used from any other folder works there the same way.
"""
from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT = {"datasets": "LSM_CORE_DATA_DIR", "networks": "LSM_CORE_NETWORKS_DIR",
               "train_data": "LSM_CORE_OUTPUT_ROOT"}


def _default(folder: str) -> Path:
    value = os.environ.get(ENVIRONMENT[folder])
    return Path(value).expanduser() if value else Path.cwd() / folder


def data_dir() -> Path:
    """The datasets folder: $LSM_CORE_DATA_DIR, else ./datasets."""
    return _default("datasets")


def networks_dir() -> Path:
    """The liquids' folder (Network_<N>.npz): $LSM_CORE_NETWORKS_DIR, else ./networks."""
    return _default("networks")


def output_root() -> Path:
    """The folder of the run folders ver_<VERSION>/ and of sweeps/: $LSM_CORE_OUTPUT_ROOT, else ./train_data."""
    return _default("train_data")


def describe(folder: str) -> str:
    """"./datasets, or $LSM_CORE_DATA_DIR" for help texts."""
    return f"./{folder}, or ${ENVIRONMENT[folder]}"
