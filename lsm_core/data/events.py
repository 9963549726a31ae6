"""N-MNIST event recordings: the 40-bit `.bin` format (docs/file-formats.md#n-mnist-recordings), 1 ms
binning (docs/model.md#n-mnist-events-binned-to-1-ms), the readers.

A recording is a list of events (x, y, polarity, t).  On disk every event takes 5 bytes:
byte 0 = x, byte 1 = y, byte 2 = polarity in the top bit and timestamp bits 22..16 below it,
bytes 3-4 = timestamp bits 15..0 (big-endian); timestamps are in µs.  x and y are 0-based sensor
coordinates in [0, 34).  Binned, a recording becomes input spikes uint8 [T, 2312] with input index
polarity*34*34 + y*34 + x and at most one spike per channel and millisecond.

Folders (`load_event_splits`), under the data directory:

* paper layout: `nmnist/{train_all,valid_all,test_all}/NNNNN.bin`, each folder with a `labels.csv`
  (header `file,label`; rows such as `00001.bin,5`).  Training recordings 00001-50000 are in
  train_all, 50001-60000 in valid_all, test recordings 00001-10000 in test_all.
* tonic layout (what `tonic.datasets.NMNIST(save_to=...)` downloads): `<save_to>/NMNIST/Train/<digit>/
  NNNNN.bin` and `.../Test/<digit>/NNNNN.bin`, looked for with save_to = `nmnist/` (where `datasets
  fetch nmnist` puts it) or the data directory itself; training numbers up to 50000 are the
  training pool, the rest validation.
* simulated recordings: the paper layout under `nmnist_simulated/` plus a marker file
  `SIMULATED.json` (a JSON object, written by `datasets simulate-nmnist`); read only when asked for.

A folder with fewer recordings than the paper's split (a subset) gives validation the last sixth of
all training recordings in number order, training the rest, and says so in a note.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lsm_core.config import N_CLASSES, PAPER
from lsm_core.errors import UserError
from lsm_core.storage import atomic_write_bytes, read_json_file

SENSOR = 34                       # the N-MNIST sensor view is 34 x 34 pixels
N_CHANNELS = 2 * SENSOR * SENSOR  # 2312 input neurons: OFF (polarity 0) then ON (polarity 1)
BYTES_PER_EVENT = 5
MAX_TIMESTAMP_US = 2 ** 23 - 1    # 23-bit timestamps: about 8.4 s
OVERFLOW_Y = 240                  # y of a timestamp-overflow marker (the authors' reader)
OVERFLOW_US = 2 ** 13             # what such a marker adds to the timestamps that follow


class Events(NamedTuple):
    """One recording: x, y uint8 in [0, 34); polarity uint8 0/1; t int64 µs; all [n_events]."""

    x: np.ndarray
    y: np.ndarray
    polarity: np.ndarray
    t: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.t)


def make_events(x, y, polarity, t) -> Events:
    """Events from array-likes, checked: coordinates in [0, 34), polarity 0/1, t in [0, 2^23) µs."""
    x, y, polarity, t = (np.asarray(a).reshape(-1) for a in (x, y, polarity, t))
    if not len(x) == len(y) == len(polarity) == len(t):
        raise ValueError(f"event arrays differ in length: x {len(x)}, y {len(y)}, "
                         f"polarity {len(polarity)}, t {len(t)}")
    for name, values, top in (("x", x, SENSOR - 1), ("y", y, SENSOR - 1), ("polarity", polarity, 1),
                              ("t", t, MAX_TIMESTAMP_US)):
        if len(values) and (values.min() < 0 or values.max() > top):
            raise ValueError(f"event {name} must lie in [0, {top}], got [{values.min()}, {values.max()}]")
    return Events(x.astype(np.uint8), y.astype(np.uint8), polarity.astype(np.uint8), t.astype(np.int64))


def encode_events(events: Events) -> bytes:
    """The 40-bit `.bin` encoding of `events` (in the given order)."""
    t = np.asarray(events.t, np.int64)
    out = np.empty((len(t), BYTES_PER_EVENT), np.uint8)
    out[:, 0] = events.x
    out[:, 1] = events.y
    out[:, 2] = (np.asarray(events.polarity, np.uint8) << 7) | ((t >> 16) & 0x7F).astype(np.uint8)
    out[:, 3] = (t >> 8) & 0xFF
    out[:, 4] = t & 0xFF
    return out.tobytes()


def decode_events(data: bytes, source: str = "recording") -> Events:
    """Events of one `.bin` recording's bytes; a length that is not a multiple of 5, events outside the
    sensor or an all-zero file of several events is an error (UserError).

    As in the dataset authors' reader, an event with y = 240 is a timestamp-overflow marker, not an
    event: it is dropped and 2^13 µs is added to its own and every later timestamp (N-MNIST's 300 ms
    recordings contain none).
    """
    try:
        return _decode(data)
    except ValueError as exc:
        raise UserError(f"{source} {exc}. Fetch the dataset again.") from None


def _decode(data: bytes) -> Events:
    """`decode_events` without the message's subject and fix: a damaged recording raises ValueError
    saying what is wrong."""
    raw = np.frombuffer(data, np.uint8)
    if len(raw) % BYTES_PER_EVENT:
        raise ValueError(f"is damaged: its size ({len(raw)} bytes) is not a multiple of {BYTES_PER_EVENT} "
                         f"bytes per event, so it was cut short or overwritten")
    if len(raw) > BYTES_PER_EVENT and not raw.any():
        raise ValueError(f"is damaged: all its {len(raw)} bytes are zero, as in a file overwritten with zeros")
    raw = raw.reshape(-1, BYTES_PER_EVENT)
    t = ((raw[:, 2].astype(np.int64) & 0x7F) << 16) | (raw[:, 3].astype(np.int64) << 8) | raw[:, 4]
    overflow = raw[:, 1] == OVERFLOW_Y
    if overflow.any():                  # markers: every later timestamp is 2^13 µs further on
        t = t + OVERFLOW_US * np.cumsum(overflow)
        raw, t = raw[~overflow], t[~overflow]
    x, y = raw[:, 0].copy(), raw[:, 1].copy()
    if len(raw) and max(int(x.max()), int(y.max())) >= SENSOR:
        raise ValueError(f"is not an N-MNIST recording (damaged, or another file): it has events outside the "
                         f"{SENSOR}x{SENSOR} sensor (x up to {x.max()}, y up to {y.max()}; both must be below "
                         f"{SENSOR})")
    return Events(x, y, raw[:, 2] >> 7, t)


def read_bin(path, simulated: bool = False) -> Events:
    """Events of the `.bin` file at `path`; an unreadable, empty or damaged file raises UserError naming
    it and the fix (`simulated`: the file belongs to a simulated N-MNIST, rewritten by simulate-nmnist)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        if not data:
            raise ValueError("is empty (0 bytes), so it was cut short; a recording holds thousands of events")
        return _decode(data)
    except (OSError, ValueError) as exc:
        problem = f"cannot be read ({exc.strerror or exc})" if isinstance(exc, OSError) else str(exc)
        raise UserError(f"The N-MNIST recording {path} {problem}. {recording_fix(path, simulated)}") from None


def recording_fix(path, simulated: bool) -> str:
    """How to replace the recording at `path` that is missing or damaged."""
    path = Path(path)
    if simulated:                       # always the paper layout: <root>/<split folder>/NNNNN.bin
        return _set_fix(path.parent.parent, True, damaged=path)
    return (f"Replace it with an intact copy of {path.name} from your N-MNIST download, or delete the N-MNIST "
            f"folder and fetch it again with `python -m lsm_core datasets fetch nmnist` (about 1 GB).")


def write_bin(path, events: Events) -> Path:
    """Write `events` to `path` in the `.bin` format, atomically."""
    return atomic_write_bytes(Path(path), encode_events(events))


def bin_events(events: Events, duration_ms: int, start_ms: int = 0) -> np.ndarray:
    """Input spikes uint8 [duration_ms, 2312] of the window [start_ms, start_ms + duration_ms).

    Each event falls into millisecond round(t / 1000) (halves to even, as NumPy rounds); several
    events of one channel in one millisecond give one spike; events outside the window are dropped.
    """
    raster = np.zeros((duration_ms, N_CHANNELS), np.uint8)
    step, channel = event_bins(events)
    step = step - start_ms
    keep = (step >= 0) & (step < duration_ms)
    raster[step[keep], channel[keep]] = 1
    return raster


def event_bins(events: Events) -> tuple[np.ndarray, np.ndarray]:
    """(millisecond int64, input channel int64) of every event, [n_events] each
    (docs/model.md#n-mnist-events-binned-to-1-ms)."""
    step = np.round(np.asarray(events.t, np.float64) / 1000.0).astype(np.int64)
    channel = (np.asarray(events.polarity, np.int64) * SENSOR * SENSOR
               + np.asarray(events.y, np.int64) * SENSOR + np.asarray(events.x, np.int64))
    return step, channel


# ----------------------------------------------------------------------------------------------
# Splits of recordings
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class EventSplit:
    """One split of recordings, decoded and binned batch by batch (a whole split as a dense array
    would be tens of GB): paths of the `.bin` files, labels int64 [n] and recording numbers int64
    [n] (the file names), in number order."""

    paths: tuple            # str [n]
    labels: np.ndarray      # int64 [n], 0..9
    numbers: np.ndarray     # int64 [n]
    simulated: bool = False

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> EventSplit:
        """The first `n` recordings."""
        return EventSplit(self.paths[:n], self.labels[:n], self.numbers[:n], self.simulated)

    def take(self, rows) -> EventSplit:
        """The recordings at positions `rows` (int [k]), in that order."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        return EventSplit(tuple(self.paths[r] for r in rows.tolist()), self.labels[rows], self.numbers[rows],
                          self.simulated)

    def events(self, row: int) -> Events:
        """The events of recording `row`."""
        return read_bin(self.paths[row], self.simulated)

    def raster(self, rows, duration_ms: int, start_ms=0) -> np.ndarray:
        """Input spikes uint8 [len(rows), duration_ms, 2312] of the recordings at positions `rows`.

        Row i holds the binned window [start_i, start_i + duration_ms) ms of its recording
        (docs/model.md#n-mnist-events-binned-to-1-ms; `bin_events`); `start_ms` is one start for every
        row or int [len(rows)].
        """
        rows = np.asarray(rows, np.int64).reshape(-1)
        starts = np.broadcast_to(np.asarray(start_ms, np.int64), rows.shape)
        duration = int(duration_ms)
        out = np.zeros((len(rows), duration, N_CHANNELS), np.uint8)
        flat = out.reshape(-1)
        positions = []
        for i, (row, start) in enumerate(zip(rows.tolist(), starts.tolist())):
            step, channel = event_bins(read_bin(self.paths[row], self.simulated))
            step -= start
            keep = (step >= 0) & (step < duration)
            positions.append((i * duration + step[keep]) * N_CHANNELS + channel[keep])
        if positions:
            flat[np.concatenate(positions)] = 1
        return out

    def inputs(self, rows, duration_ms: int, start_ms=0) -> np.ndarray:
        """The simulator's event-mode input for `rows`: `raster(rows, duration_ms, start_ms)`."""
        return self.raster(rows, duration_ms, start_ms)


# ----------------------------------------------------------------------------------------------
# Folder layouts
# ----------------------------------------------------------------------------------------------

REAL_FOLDER = "nmnist"                      # under the data directory
SIMULATED_FOLDER = "nmnist_simulated"
PAPER_FOLDERS = {"train": "train_all", "valid": "valid_all", "test": "test_all"}
LABELS_FILE = "labels.csv"
LABELS_HEADER = ("file", "label")
SIMULATED_MARKER = "SIMULATED.json"
SIMULATION_IN_PROGRESS = ".simulate-nmnist.in-progress.json"   # the generator's "not finished" marker
TONIC_ROOT = "NMNIST"                       # tonic's folder under its save_to
TONIC_FOLDERS = {"train": "Train", "test": "Test"}
TRAIN_POOL = PAPER.protocol.train_samples   # 50000: training numbers above this are validation
N_TRAIN_RECORDINGS = TRAIN_POOL + PAPER.protocol.valid_samples    # 60000
N_TEST_RECORDINGS = PAPER.protocol.test_samples                   # 10000
_FILE_NAME = re.compile(r"^(\d{1,9})\.bin$")


@dataclass(frozen=True)
class EventLayout:
    """Where a set of recordings is: `kind` "paper" or "tonic", `root` the folder holding the
    paper layout's three folders or tonic's Train/Test."""

    kind: str
    root: Path
    simulated: bool


def nmnist_folder(data_dir, simulated: bool) -> Path:
    """`<data_dir>/nmnist` (real recordings) or `<data_dir>/nmnist_simulated`."""
    return Path(data_dir) / (SIMULATED_FOLDER if simulated else REAL_FOLDER)


def find_event_layout(data_dir, simulated: bool) -> EventLayout | None:
    """The layout found under `data_dir` (paper layout first, then tonic's), or None when there is none."""
    root = nmnist_folder(data_dir, simulated)
    if any((root / folder).is_dir() for folder in PAPER_FOLDERS.values()):
        return EventLayout("paper", root, simulated)
    if not simulated:
        for candidate in (root / TONIC_ROOT, Path(data_dir) / TONIC_ROOT):
            if any((candidate / folder).is_dir() for folder in TONIC_FOLDERS.values()):
                return EventLayout("tonic", candidate, simulated)
    return None


def missing_message(data_dir, simulated: bool) -> str:
    """What is missing and the command that provides it."""
    root = nmnist_folder(data_dir, simulated)
    if simulated:
        return (f"There is no simulated N-MNIST under {root} (expected train_all/, valid_all/, test_all/ "
                f"and {SIMULATED_MARKER}). Write it with `{simulate_command(root)}` (--train-count and "
                f"--test-count write a subset).")
    return (f"There are no N-MNIST recordings under {Path(data_dir)}: expected {root}/train_all, valid_all "
            f"and test_all (paper layout), or {root / TONIC_ROOT}/Train and Test (the layout tonic downloads). "
            f"Get them with `python -m lsm_core datasets fetch nmnist` (downloads about 1 GB through tonic), "
            f"or run on simulated recordings: `python -m lsm_core datasets simulate-nmnist`, then add "
            f"--simulated-nmnist to the script.")


def simulate_command(root) -> str:
    """The `datasets simulate-nmnist` command that writes, or completes, the simulated N-MNIST in `root`:
    the counts and seed its marker records (a re-run with them rewrites only what is missing), and
    --out unless `root` is the default folder."""
    root = Path(root)
    markers = (read_json_file(root / SIMULATED_MARKER), read_json_file(root / SIMULATION_IN_PROGRESS))
    marker = next((m for m in markers if isinstance(m, dict)), {})
    command = "python -m lsm_core datasets simulate-nmnist"
    for key, option in (("train_count", "--train-count"), ("test_count", "--test-count"), ("seed", "--seed")):
        if isinstance(marker.get(key), int) and not isinstance(marker[key], bool):
            command += f" {option} {marker[key]}"
    if root.resolve() != _default_data_dir() / SIMULATED_FOLDER:
        command += f" --out {root}"
    return command


def _set_fix(root: Path, simulated: bool, damaged=None) -> str:
    """How to repair the recordings in `root` (a simulated set is rewritten by simulate-nmnist); `damaged`
    names a file to delete or replace first."""
    if simulated:
        return ((f"Delete {damaged} and run" if damaged else "Run") + f" `{simulate_command(root)}` again: it "
                f"rewrites the missing files of this simulated N-MNIST, exactly as they were.")
    return ((f"Replace {damaged} with an intact copy from your N-MNIST download" if damaged else
             "Restore the missing files from your N-MNIST download")
            + f", or delete {root} and fetch N-MNIST again with `python -m lsm_core datasets fetch nmnist` "
              f"(about 1 GB).")


def _default_data_dir() -> Path:
    from lsm_core.places import data_dir
    return data_dir().resolve()


def read_simulated_marker(root: Path) -> dict:
    """The JSON object in `<root>/SIMULATED.json` (a simulated set without it is refused)."""
    path = Path(root) / SIMULATED_MARKER
    if not path.is_file():
        unfinished = (Path(root) / SIMULATION_IN_PROGRESS).exists()
        raise UserError(
            f"{root} has no {SIMULATED_MARKER}, so it is not a finished simulated N-MNIST"
            + (f" (its generation was interrupted). Run `{simulate_command(root)}` again: it resumes."
               if unfinished else
               f". Delete {root} and write it again with `{simulate_command(root)}` (a folder without the "
               f"marker is never written into)."))
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); write the simulated N-MNIST again with "
                        f"`python -m lsm_core datasets simulate-nmnist`.") from None
    if not isinstance(marker, dict):
        raise UserError(f"{path} does not hold a JSON object; write the simulated N-MNIST again with "
                        f"`python -m lsm_core datasets simulate-nmnist`.")
    return marker


def _refuse_simulated_as_real(layout: EventLayout) -> None:
    for folder in {layout.root, layout.root.parent}:
        if (folder / SIMULATED_MARKER).exists():
            raise UserError(
                f"{folder} holds simulated recordings (it has {SIMULATED_MARKER}), so results on it would not be "
                f"N-MNIST results. Move it to {SIMULATED_FOLDER}/ beside {REAL_FOLDER}/ and pass "
                f"--simulated-nmnist, or fetch the real recordings with `python -m lsm_core datasets fetch nmnist`.")


def _read_labelled_folder(folder: Path, simulated: bool = False) -> tuple:
    """(numbers int64 [n], labels int64 [n], paths) of a paper-layout folder, from its labels.csv,
    checked against the .bin files present; a missing folder is empty.  Every problem raises UserError
    naming the file (and the line of labels.csv) and the fix."""
    if not folder.is_dir():
        return np.zeros(0, np.int64), np.zeros(0, np.int64), ()
    root = folder.parent
    on_disk = {entry.name for entry in os.scandir(folder) if entry.name.endswith(".bin")}
    labels_path = folder / LABELS_FILE
    if not labels_path.is_file():
        if on_disk:
            raise UserError(f"{folder} holds {len(on_disk)} .bin recordings but no {LABELS_FILE} (header "
                            f"`file,label`, one row per recording), so their labels are unknown. "
                            f"{_set_fix(root, simulated)}")
        return np.zeros(0, np.int64), np.zeros(0, np.int64), ()
    try:
        with open(labels_path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"Cannot read {labels_path} ({exc}). {_set_fix(root, simulated, labels_path)}") from None
    if not rows or tuple(cell.strip() for cell in rows[0]) != LABELS_HEADER:
        got = f"line 1 is {','.join(rows[0])!r}" if rows else "the file is empty"
        raise UserError(f"{labels_path} must start with the header `file,label`, but {got}. "
                        f"{_set_fix(root, simulated, labels_path)}")
    numbers, labels, names, lines = [], [], [], {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        problem = _labels_row_problem(row)
        if problem:
            raise UserError(f"{labels_path} line {line} ({','.join(row)!r}) is not `NNNNN.bin,<digit 0-9>`: "
                            f"{problem}. {_set_fix(root, simulated, labels_path)}")
        name = row[0].strip()
        if name in lines:
            raise UserError(f"{labels_path} lists {name} twice (lines {lines[name]} and {line}). "
                            f"{_set_fix(root, simulated, labels_path)}")
        lines[name] = line
        numbers.append(int(_FILE_NAME.match(name).group(1)))
        labels.append(int(row[1].strip()))
        names.append(name)
    missing, unlisted = sorted(set(names) - on_disk), sorted(on_disk - set(names))
    if missing:
        raise UserError(f"{len(missing)} recordings listed in {labels_path} are missing from {folder} (e.g. "
                        f"{folder / missing[0]}, line {lines[missing[0]]}). {_set_fix(root, simulated)}")
    if unlisted:
        raise UserError(f"{folder} holds {len(unlisted)} .bin files that {labels_path} does not list (e.g. "
                        f"{unlisted[0]}), so their labels are unknown. Move them out of {folder}, or "
                        + (f"delete {labels_path} and run `{simulate_command(root)}` again (it rewrites the "
                           f"file)." if simulated else
                           f"delete {root} and fetch N-MNIST again with `python -m lsm_core datasets fetch nmnist`."))
    return _in_number_order(np.asarray(numbers, np.int64), np.asarray(labels, np.int64),
                            [str(folder / name) for name in names], str(folder))


def _labels_row_problem(row: list) -> str | None:
    """What is wrong with one row of labels.csv, or None."""
    if len(row) != 2:
        return f"it has {len(row)} columns, expected 2"
    if _FILE_NAME.match(row[0].strip()) is None:
        return f"{row[0].strip()!r} is not a recording's file name (digits, then .bin)"
    label = row[1].strip()
    if re.fullmatch(r"[0-9]+", label) is None:
        return f"the label {label!r} is not a whole number"
    if int(label) >= N_CLASSES:
        return f"the label {int(label)} is outside 0-{N_CLASSES - 1}"
    return None


def _read_digit_folders(folder: Path) -> tuple:
    """(numbers, labels, paths) of a tonic-layout folder: <folder>/<digit>/NNNNN.bin."""
    numbers, labels, paths = [], [], []
    if folder.is_dir():
        for entry in os.scandir(folder):
            if not (entry.is_dir() and len(entry.name) == 1 and entry.name.isdigit()):
                continue
            for item in os.scandir(entry.path):
                match = _FILE_NAME.match(item.name)
                if match:
                    numbers.append(int(match.group(1)))
                    labels.append(int(entry.name))
                    paths.append(item.path)
    return _in_number_order(np.asarray(numbers, np.int64), np.asarray(labels, np.int64), paths, str(folder))


def _in_number_order(numbers, labels, paths, where: str) -> tuple:
    order = np.argsort(numbers, kind="stable")
    numbers, labels = numbers[order], labels[order]
    if len(numbers) > 1 and np.any(numbers[1:] == numbers[:-1]):
        twice = int(numbers[1:][numbers[1:] == numbers[:-1]][0])
        raise UserError(f"{where} holds recording number {twice} more than once; fetch or write the dataset again.")
    return numbers, labels, tuple(paths[i] for i in order.tolist())


def load_event_splits(data_dir=None, simulated: bool = False) -> tuple[dict, list]:
    """The splits {"train", "valid", "test": EventSplit} of the N-MNIST under `data_dir` and notes for
    the run log (a subset, where the data came from).

    Real recordings: paper layout `nmnist/`, else tonic's layout; a folder marked simulated is
    refused.  Simulated (`simulated=True`): `nmnist_simulated/` with its SIMULATED.json.  "train" is
    the whole training pool (numbers 1-50000), "valid" 50001-60000, "test" the test recordings; with
    fewer training recordings than 60000, validation is the last sixth of them in number order.
    """
    data_dir = Path(data_dir) if data_dir is not None else _default_data_dir()
    layout = find_event_layout(data_dir, simulated)
    if layout is None:
        raise UserError(missing_message(data_dir, simulated))
    what = "simulated N-MNIST" if simulated else "N-MNIST"
    notes = [f"{what} recordings from {layout.root} ({layout.kind} layout)"]
    if simulated:
        marker = read_simulated_marker(layout.root)
        notes[0] += f"; SIMULATED ({SIMULATED_MARKER}): results on it are not N-MNIST results"
    else:
        _refuse_simulated_as_real(layout)
    if layout.kind == "paper":
        train, valid, test = (_read_labelled_folder(layout.root / PAPER_FOLDERS[split], simulated)
                              for split in ("train", "valid", "test"))
        if simulated:
            _check_simulated_counts(layout.root, marker, {"train": train, "valid": valid, "test": test})
    else:
        pool = _read_digit_folders(layout.root / TONIC_FOLDERS["train"])
        is_train = pool[0] <= TRAIN_POOL
        train, valid = (_select(pool, is_train), _select(pool, ~is_train))
        test = _read_digit_folders(layout.root / TONIC_FOLDERS["test"])
    if len(train[0]) != TRAIN_POOL or len(valid[0]) != N_TRAIN_RECORDINGS - TRAIN_POOL:
        pool = _in_number_order(np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]]),
                                train[2] + valid[2], str(layout.root))
        n, n_valid = len(pool[0]), len(pool[0]) // 6
        if n_valid == 0:
            raise UserError(f"{layout.root} holds {n} training recordings; at least 6 are needed (five sixths "
                            f"for training, one sixth for validation). Fetch or write more of the dataset.")
        train, valid = _select(pool, np.arange(n) < n - n_valid), _select(pool, np.arange(n) >= n - n_valid)
        notes.append(f"subset: {n} training recordings instead of {N_TRAIN_RECORDINGS}, so validation takes the "
                     f"last sixth of them ({n_valid} recordings, numbers {valid[0][0]}-{valid[0][-1]}) and training "
                     f"the rest ({n - n_valid}, numbers {train[0][0]}-{train[0][-1]})")
    if len(test[0]) == 0:
        raise UserError(f"{layout.root} holds no test recordings; fetch or write the dataset again.")
    if len(test[0]) != N_TEST_RECORDINGS:
        notes.append(f"subset: {len(test[0])} test recordings instead of {N_TEST_RECORDINGS}")
    splits = {name: EventSplit(paths, labels, numbers, simulated)
              for name, (numbers, labels, paths) in (("train", train), ("valid", valid), ("test", test))}
    return splits, notes


def _check_simulated_counts(root: Path, marker: dict, parts: dict) -> None:
    """Each folder of a simulated set holds the recordings its marker's train_count and test_count say
    (a marker without them is not checked); a missing folder or recording raises UserError."""
    train_count, test_count = marker.get("train_count"), marker.get("test_count")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (train_count, test_count)):
        return
    expected = {"train": min(train_count, TRAIN_POOL), "valid": max(0, train_count - TRAIN_POOL),
                "test": test_count}
    for split, count in expected.items():
        folder = root / PAPER_FOLDERS[split]
        found = len(parts[split][0])
        if found == count:
            continue
        what = (f"{folder} is missing" if not folder.is_dir() else
                f"{folder / LABELS_FILE} is missing" if not (folder / LABELS_FILE).is_file() else
                f"{folder} holds {found} recordings")
        raise UserError(f"{what}, but this simulated N-MNIST has {count} recordings there ({SIMULATED_MARKER}: "
                        f"train_count {train_count}, test_count {test_count}). {_set_fix(root, True)}")


def _select(part: tuple, mask) -> tuple:
    numbers, labels, paths = part
    rows = np.flatnonzero(mask)
    return numbers[rows], labels[rows], tuple(paths[i] for i in rows.tolist())


def check_recordings(split: EventSplit, count: int = 100) -> dict:
    """Decode `count` recordings spread evenly over `split` (first and last included); returns their
    statistics: {"checked", "events_mean", "events_min", "events_max", "t_max_us", "on_fraction"}.
    A damaged file raises UserError naming it."""
    if len(split) == 0:
        return {"checked": 0}
    rows = np.unique(np.linspace(0, len(split) - 1, min(count, len(split))).round().astype(np.int64))
    sizes, t_max, on = [], 0, 0
    for row in rows.tolist():
        events = split.events(row)
        sizes.append(events.n_events)
        if events.n_events:
            t_max = max(t_max, int(events.t.max()))
            on += int(events.polarity.sum())
    return {"checked": len(rows), "events_mean": float(np.mean(sizes)), "events_min": int(min(sizes)),
            "events_max": int(max(sizes)), "t_max_us": t_max, "on_fraction": on / max(1, sum(sizes))}
