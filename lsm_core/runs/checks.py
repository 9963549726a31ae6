"""What each file of a run folder must hold: the format checks a file passes before it is used.

`RunFolder.read_npz(name, check)` first compares a file with its size and SHA-256 in manifest.json,
then calls one of the checks below on its content.  A check raises ValueError naming the first thing
that is wrong (a missing array, a shape, a dtype, a value out of range); the caller turns it into
`DamagedFile`, which the run protocol either recovers from (the file is derived again) or reports.
The manifest alone catches damage after the write; the checks also cover folders whose manifest is
missing (runs made before manifests existed) and files whose bytes are intact but belong elsewhere.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lsm_core.config import N_CLASSES

Check = Callable[[dict], None]


def expect(arrays: dict, name: str, kind: str, shape: Sequence) -> np.ndarray:
    """arrays[name], which must exist, have a dtype of `kind` ("i" integer, "f" float, "b" bool,
    "U" text) and the `shape` given (None: any length on that axis)."""
    if name not in arrays:
        raise ValueError(f"it lacks the array {name!r}")
    value = arrays[name]
    kinds = {"i": "iu", "f": "f", "b": "b", "U": "U"}[kind]
    if value.dtype.kind not in kinds:
        raise ValueError(f"its array {name!r} has dtype {value.dtype}, expected {_KIND_NAMES[kind]}")
    if len(value.shape) != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        wanted = "[" + ", ".join("any" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"its array {name!r} has shape {list(value.shape)}, expected {wanted}")
    return value


_KIND_NAMES = {"i": "integers", "f": "floats", "b": "booleans", "U": "text"}


def _within(value: np.ndarray, name: str, low, high) -> None:
    if value.size and not (np.all(value >= low) and np.all(value <= high)):
        raise ValueError(f"its array {name!r} has values outside {low}..{high}")


def _finite(value: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(value)):
        raise ValueError(f"its array {name!r} holds NaN or infinite values")


def counts(first: int, n: int, n_res: int | None, duration_ms: int, bins: int = 1) -> Check:
    """Spike counts of samples first..first+n-1 of a split (a counts_<split>.npz or a block's counts):
    `counts` int [n, n_res] (or [n, bins, n_res] in time bins) in 0..duration_ms (a neuron spikes at most
    once a millisecond), `labels` int [n] in 0..9 and `index` = first..first+n-1.  n_res None: any."""
    shape = (n, n_res) if bins == 1 else (n, bins, n_res)

    def check(arrays: dict) -> None:
        _within(expect(arrays, "counts", "i", shape), "counts", 0, duration_ms)
        _within(expect(arrays, "labels", "i", (n,)), "labels", 0, N_CLASSES - 1)
        if not np.array_equal(expect(arrays, "index", "i", (n,)), np.arange(first, first + n)):
            raise ValueError(f"its array 'index' is not the samples {first}..{first + n - 1}")
    return check


def block(first: int, n: int, n_res: int, n_neurons: int, duration_ms: int, raster_index: np.ndarray,
          bins: int = 1) -> Check:
    """A block of the spike-count phase: its counts (see `counts`) and the rasters of the rows in
    `raster_index` (`raster_spikes` bool [k, duration_ms, n_neurons], `raster_astro` float [k, duration_ms])."""
    count_check = counts(first, n, n_res, duration_ms, bins)

    def check(arrays: dict) -> None:
        count_check(arrays)
        rasters(raster_index, n_neurons, duration_ms, prefix="raster_")(arrays)
    return check


def rasters(index: np.ndarray, n_neurons: int, duration_ms: int, prefix: str) -> Check:
    """Rasters of the samples `index`: `<prefix>spikes` bool [k, duration_ms, n_neurons], `<prefix>index`
    = index, `<prefix>astro` float [k, duration_ms]."""
    k = len(index)

    def check(arrays: dict) -> None:
        expect(arrays, f"{prefix}spikes", "b", (k, duration_ms, n_neurons))
        if not np.array_equal(expect(arrays, f"{prefix}index", "i", (k,)), index):
            raise ValueError(f"its array '{prefix}index' is not the samples whose rasters are kept")
        _finite(expect(arrays, f"{prefix}astro", "f", (k, duration_ms)), f"{prefix}astro")
    return check


def split_rasters(split: str, index: np.ndarray, n_neurons: int, duration_ms: int) -> Check:
    """One split's part of rasters.npz: its spikes, index and astrocyte traces (see `rasters`) and
    `<split>_labels` int [k] in 0..9."""
    raster_check = rasters(index, n_neurons, duration_ms, prefix=f"{split}_")

    def check(arrays: dict) -> None:
        raster_check(arrays)
        _within(expect(arrays, f"{split}_labels", "i", (len(index),)), f"{split}_labels", 0, N_CLASSES - 1)
    return check


def weights(post: np.ndarray, pre: np.ndarray, n_neurons: int) -> Check:
    """A weights file (W_INI.npz): the liquid's synapses `post`, `pre` as given, `weights` float32
    [n_syn] finite, `n_neurons`."""
    def check(arrays: dict) -> None:
        for name, wanted in (("post", post), ("pre", pre)):
            if not np.array_equal(expect(arrays, name, "i", (len(wanted),)), wanted):
                raise ValueError(f"its array {name!r} is not the run liquid's synapses")
        _finite(expect(arrays, "weights", "f", (len(post),)), "weights")
        if int(expect(arrays, "n_neurons", "i", ())) != n_neurons:
            raise ValueError(f"its n_neurons is not the liquid's {n_neurons}")
    return check


def init_state(n_syn: int, n_neurons: int, init_samples: int) -> Check:
    """The init phase's checkpoint: `weights` float [1, n_syn], `trace` and `calcium` float [1, n_neurons],
    all finite, and `done` in 1..init_samples."""
    def check(arrays: dict) -> None:
        for name, width in (("weights", n_syn), ("trace", n_neurons), ("calcium", n_neurons)):
            _finite(expect(arrays, name, "f", (1, width)), name)
        _within(expect(arrays, "done", "i", ()), "done", 1, init_samples)
    return check


def history_rows(rows: list) -> None:
    """Readout history rows: epochs 1, 2, ..., accuracies in 0..1 (test may be NaN when there is none)."""
    for number, row in enumerate(rows, 1):
        if row["epoch"] != number:
            raise ValueError(f"its epochs do not run 1, 2, 3...: row {number} is epoch {row['epoch']}")
        for name in ("train_acc", "valid_acc"):
            if not 0.0 <= row[name] <= 1.0:
                raise ValueError(f"epoch {number} has {name} {row[name]}, outside 0..1")


def timings(content) -> None:
    """timings.json: {phase: seconds} with seconds a non-negative number."""
    if not isinstance(content, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for k, v in content.items()):
        raise ValueError("it is not a mapping of phase names to non-negative seconds")
