"""N-MNIST recordings: the .bin codec, 1 ms binning
(docs/model.md#n-mnist-events-binned-to-1-ms), the folder layouts and the subset rule."""
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lsm_core.data import events as ev
from lsm_core.data.events import (
    EventSplit,
    bin_events,
    decode_events,
    encode_events,
    load_event_splits,
    make_events,
    read_bin,
    write_bin,
)
from lsm_core.errors import UserError


def recording(rng, n=50, t_max=300_000):
    return make_events(rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n),
                       np.sort(rng.integers(0, t_max, n)))


def write_paper_folder(folder: Path, numbers, rng, label_of=lambda n: n % 10, csv=True):
    """NNNNN.bin recordings (label n % 10) and labels.csv, as the paper layout has them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["file,label"]
    for number in numbers:
        write_bin(folder / f"{number:05d}.bin", recording(rng))
        rows.append(f"{number:05d}.bin,{label_of(number)}")
    if csv:
        (folder / "labels.csv").write_text("\n".join(rows) + "\n")


def write_tonic_folder(folder: Path, numbers, rng):
    """<folder>/<digit>/NNNNN.bin as tonic's NMNIST download has them (label = digit folder = n % 10)."""
    for number in numbers:
        (folder / str(number % 10)).mkdir(parents=True, exist_ok=True)
        write_bin(folder / str(number % 10) / f"{number:05d}.bin", recording(rng))


@pytest.fixture
def small_protocol(monkeypatch):
    """The paper's split scaled down: training pool 1-10, validation 11-12, test 1-4."""
    monkeypatch.setattr(ev, "TRAIN_POOL", 10)
    monkeypatch.setattr(ev, "N_TRAIN_RECORDINGS", 12)
    monkeypatch.setattr(ev, "N_TEST_RECORDINGS", 4)


# ----------------------------------------------------------------------------------------------
# The .bin codec
# ----------------------------------------------------------------------------------------------

def test_encoding_bytes_by_hand():
    events = make_events([5, 33], [7, 0], [1, 0], [0x123456, 0x7FFFFF])
    assert encode_events(events) == bytes([5, 7, 0x80 | 0x12, 0x34, 0x56, 33, 0, 0x7F, 0xFF, 0xFF])


def test_round_trip_through_a_file(tmp_path):
    events = recording(np.random.default_rng(2), n=500)
    back = read_bin(write_bin(tmp_path / "00001.bin", events))
    for name in ("x", "y", "polarity", "t"):
        np.testing.assert_array_equal(getattr(back, name), getattr(events, name))
    assert decode_events(encode_events(make_events([], [], [], []))).n_events == 0


def test_tonic_reads_the_files_we_write(tmp_path):
    tonic_io = pytest.importorskip("tonic.io")
    events = recording(np.random.default_rng(3), n=400)
    write_bin(tmp_path / "r.bin", events)
    theirs = tonic_io.read_mnist_file(str(tmp_path / "r.bin"), dtype=np.dtype(
        [("x", int), ("y", int), ("t", int), ("p", int)]))
    np.testing.assert_array_equal(theirs["x"], events.x)
    np.testing.assert_array_equal(theirs["y"], events.y)
    np.testing.assert_array_equal(theirs["t"], events.t)
    np.testing.assert_array_equal(theirs["p"], events.polarity)


def test_overflow_markers_shift_later_timestamps_like_the_authors_reader(tmp_path):
    data = encode_events(make_events([1, 2], [3, 4], [0, 1], [100, 200]))
    marker = bytes([0, 240, 0, 0, 0])                   # y = 240: timestamp overflow
    (tmp_path / "o.bin").write_bytes(data[:5] + marker + data[5:])
    events = read_bin(tmp_path / "o.bin")
    np.testing.assert_array_equal(events.t, [100, 200 + 2 ** 13])
    np.testing.assert_array_equal(events.y, [3, 4])
    tonic_io = pytest.importorskip("tonic.io")
    theirs = tonic_io.read_mnist_file(str(tmp_path / "o.bin"), dtype=np.dtype(
        [("x", int), ("y", int), ("t", int), ("p", int)]))
    np.testing.assert_array_equal(theirs["t"], events.t)


def test_damaged_recordings():
    with pytest.raises(UserError, match="not a multiple of 5"):
        decode_events(b"\x00" * 7, "r.bin")
    with pytest.raises(UserError, match="outside the 34x34 sensor"):
        decode_events(bytes([40, 1, 0, 0, 1]), "r.bin")


# ----------------------------------------------------------------------------------------------
# Binning (docs/model.md#n-mnist-events-binned-to-1-ms)
# ----------------------------------------------------------------------------------------------

def test_binning_rounds_half_to_even_and_keeps_one_spike_per_ms_and_channel():
    # ms:          0    0    0     1     2     2     2     2     3     4     4  (4 is past 4 ms: dropped)
    t = np.array([0, 499, 500, 1499, 1500, 2000, 2499, 2500, 2501, 3500, 4500])
    events = make_events(np.full(11, 3), np.full(11, 2), np.zeros(11), t)
    raster = bin_events(events, duration_ms=4)
    channel = 0 * 34 * 34 + 2 * 34 + 3
    assert raster.shape == (4, 2312) and raster.dtype == np.uint8
    np.testing.assert_array_equal(raster[:, channel], [1, 1, 1, 1])
    assert raster.sum() == 4                             # duplicates in one ms give one spike
    counts = np.bincount(np.round(t / 1000).astype(int))
    assert counts.tolist() == [3, 1, 4, 1, 2]            # NumPy's rounding, as in the section above


def test_index_layout_polarity_then_row_then_column():
    events = make_events([0, 33, 5, 5], [0, 33, 1, 1], [0, 1, 1, 0], [0, 1000, 2000, 3000])
    raster = bin_events(events, duration_ms=5)
    assert list(zip(*np.nonzero(raster))) == [(0, 0), (1, 1156 + 33 * 34 + 33), (2, 1156 + 34 + 5), (3, 34 + 5)]


def test_window_start_and_split_raster_with_per_row_starts(tmp_path):
    rng = np.random.default_rng(5)
    recordings = [recording(rng, n=3000) for _ in range(3)]
    paths = tuple(str(write_bin(tmp_path / f"{i + 1:05d}.bin", r)) for i, r in enumerate(recordings))
    split = EventSplit(paths, np.array([4, 5, 6]), np.array([1, 2, 3]), simulated=False)
    starts = np.array([1, 278, 100])
    batch = split.raster([2, 0, 1], 20, starts)
    assert batch.shape == (3, 20, 2312) and batch.dtype == np.uint8
    for i, (row, start) in enumerate(zip([2, 0, 1], starts)):
        np.testing.assert_array_equal(batch[i], bin_events(recordings[row], 20, start_ms=int(start)))
        np.testing.assert_array_equal(batch[i], bin_events(recordings[row], 300)[start:start + 20])
    np.testing.assert_array_equal(split.inputs([1], 250), bin_events(recordings[1], 250)[None])
    assert len(split.head(2)) == 2 and split.take([2, 0]).labels.tolist() == [6, 4]
    stats = ev.check_recordings(split)
    assert stats["checked"] == 3 and stats["events_mean"] == 3000 and 0.4 < stats["on_fraction"] < 0.6


# ----------------------------------------------------------------------------------------------
# Layouts
# ----------------------------------------------------------------------------------------------

def test_paper_layout_standard_split(tmp_path, small_protocol):
    rng = np.random.default_rng(6)
    root = tmp_path / "nmnist"
    write_paper_folder(root / "train_all", range(1, 11), rng)
    write_paper_folder(root / "valid_all", range(11, 13), rng)
    write_paper_folder(root / "test_all", [4, 2, 1, 3], rng, label_of=lambda n: 9 - n)
    splits, notes = load_event_splits(tmp_path)
    assert [len(splits[s]) for s in ("train", "valid", "test")] == [10, 2, 4]
    assert splits["train"].numbers.tolist() == list(range(1, 11))
    assert splits["test"].numbers.tolist() == [1, 2, 3, 4]               # number order, not file order
    assert splits["test"].labels.tolist() == [8, 7, 6, 5]
    assert splits["valid"].labels.tolist() == [1, 2] and not splits["valid"].simulated
    assert len(notes) == 1 and "paper layout" in notes[0]
    np.testing.assert_array_equal(splits["train"].inputs([2], 300)[0],
                                  bin_events(read_bin(root / "train_all" / "00003.bin"), 300))


def test_subset_takes_the_last_sixth_of_the_training_recordings_for_validation(tmp_path):
    rng = np.random.default_rng(7)
    root = tmp_path / "nmnist_simulated"
    write_paper_folder(root / "train_all", range(1, 61), rng)       # no valid_all at all
    write_paper_folder(root / "test_all", range(1, 21), rng)
    (root / "SIMULATED.json").write_text(json.dumps({"seed": 3}))
    splits, notes = load_event_splits(tmp_path, simulated=True)
    assert splits["train"].numbers.tolist() == list(range(1, 51))
    assert splits["valid"].numbers.tolist() == list(range(51, 61))
    assert all(split.simulated for split in splits.values())
    text = " ".join(notes)
    assert "SIMULATED" in text and "last sixth" in text and "numbers 51-60" in text and "20 test recordings" in text


def test_subset_across_both_training_folders(tmp_path):
    rng = np.random.default_rng(8)
    root = tmp_path / "nmnist"
    write_paper_folder(root / "train_all", [3, 1, 2, 4, 5, 6, 7, 8], rng)
    write_paper_folder(root / "valid_all", [50001, 50003, 50002, 50004], rng)
    write_paper_folder(root / "test_all", [1], rng)
    splits, _ = load_event_splits(tmp_path)
    assert splits["train"].numbers.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 50001, 50002]
    assert splits["valid"].numbers.tolist() == [50003, 50004]


@pytest.mark.parametrize("save_to", ["nmnist", "."])
def test_tonic_layout(tmp_path, small_protocol, save_to):
    rng = np.random.default_rng(9)
    root = tmp_path / save_to / "NMNIST"
    write_tonic_folder(root / "Train", range(1, 13), rng)
    write_tonic_folder(root / "Test", range(1, 5), rng)
    (root / "Train" / "notes").mkdir()                                  # other folders are ignored
    splits, notes = load_event_splits(tmp_path)
    assert splits["train"].numbers.tolist() == list(range(1, 11))       # numbers <= the training pool
    assert splits["valid"].numbers.tolist() == [11, 12]
    assert splits["valid"].labels.tolist() == [1, 2]                    # from the digit folders
    assert splits["test"].labels.tolist() == [1, 2, 3, 4]
    assert "tonic layout" in notes[0] and len(notes) == 1
    assert ev.find_event_layout(tmp_path, simulated=False).root == root


def test_tonic_subset(tmp_path):
    rng = np.random.default_rng(10)
    write_tonic_folder(tmp_path / "nmnist" / "NMNIST" / "Train", range(1, 13), rng)
    write_tonic_folder(tmp_path / "nmnist" / "NMNIST" / "Test", range(1, 3), rng)
    splits, notes = load_event_splits(tmp_path)
    assert splits["train"].numbers.tolist() == list(range(1, 11)) and splits["valid"].numbers.tolist() == [11, 12]
    assert any("last sixth" in note for note in notes)


def test_missing_data_names_the_commands(tmp_path):
    with pytest.raises(UserError, match="datasets fetch nmnist") as info:
        load_event_splits(tmp_path)
    assert "--simulated-nmnist" in str(info.value)
    with pytest.raises(UserError, match="datasets simulate-nmnist"):
        load_event_splits(tmp_path, simulated=True)


def test_simulated_and_real_are_never_mixed_up(tmp_path):
    rng = np.random.default_rng(11)
    for folder in ("nmnist", "nmnist_simulated"):
        write_paper_folder(tmp_path / folder / "train_all", range(1, 7), rng)
        write_paper_folder(tmp_path / folder / "test_all", [1], rng)
    with pytest.raises(UserError, match="no SIMULATED.json"):               # not finished (or not simulated)
        load_event_splits(tmp_path, simulated=True)
    (tmp_path / "nmnist_simulated" / ".simulate-nmnist.in-progress.json").write_text("{}")
    with pytest.raises(UserError, match="interrupted"):
        load_event_splits(tmp_path, simulated=True)
    (tmp_path / "nmnist" / "SIMULATED.json").write_text("{}")
    with pytest.raises(UserError, match="holds simulated recordings"):       # simulated data in the real place
        load_event_splits(tmp_path)
    (tmp_path / "nmnist_simulated" / "SIMULATED.json").write_text("[1]")
    with pytest.raises(UserError, match="does not hold a JSON object"):
        load_event_splits(tmp_path, simulated=True)


@pytest.mark.parametrize("break_it, message", [
    (lambda f: (f / "labels.csv").unlink(), "no labels.csv"),
    (lambda f: (f / "labels.csv").write_text("name,digit\n"), "must start with the header `file,label`"),
    (lambda f: (f / "labels.csv").write_text("file,label\n00001.bin,12\n"), "line 2"),
    (lambda f: (f / "labels.csv").write_text("file,label\n00001.bin,1\n00002.bin,2\n00001.bin,1\n"),
     "twice"),
    (lambda f: (f / "00002.bin").unlink(), "1 recordings listed .* are missing"),
    (lambda f: write_bin(f / "00099.bin", make_events([], [], [], [])), "does not list"),
    (lambda f: (f / "00003.bin").write_bytes(b"\x00" * 6), "not a multiple of 5"),
])
def test_damaged_folders_give_clear_errors(tmp_path, break_it, message):
    rng = np.random.default_rng(12)
    write_paper_folder(tmp_path / "nmnist" / "train_all", range(1, 13), rng)
    write_paper_folder(tmp_path / "nmnist" / "test_all", [1, 2, 3], rng)
    break_it(tmp_path / "nmnist" / "train_all")
    with pytest.raises(UserError, match=message):
        splits, _ = load_event_splits(tmp_path)
        ev.check_recordings(splits["train"])


def test_too_few_training_recordings(tmp_path):
    rng = np.random.default_rng(13)
    write_paper_folder(tmp_path / "nmnist" / "train_all", range(1, 6), rng)
    write_paper_folder(tmp_path / "nmnist" / "test_all", [1], rng)
    with pytest.raises(UserError, match="at least 6 are needed"):
        load_event_splits(tmp_path)


# ----------------------------------------------------------------------------------------------
# Damaged recordings and labels.csv: a UserError naming the file (and the line) and the fix
# ----------------------------------------------------------------------------------------------

def _garbage(data: bytes) -> bytes:
    return np.random.default_rng(14).integers(0, 256, len(data), dtype=np.uint8).tobytes()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-2], "not a multiple of 5"),                              # cut mid-event
    (lambda data: data[:len(data) // 2 + 3], "not a multiple of 5"),
    (_garbage, "outside the 34x34 sensor"),                                       # random bytes
    (lambda data: b"", "is empty"),
    (lambda data: bytes(len(data)), "all its 250 bytes are zero"),
])
@pytest.mark.parametrize("simulated", [False, True])
def test_a_damaged_recording_names_the_file_wherever_it_is_read(tmp_path, damage, message, simulated):
    rng = np.random.default_rng(15)
    root = tmp_path / ("nmnist_simulated" if simulated else "nmnist")
    write_paper_folder(root / "train_all", range(1, 7), rng)
    write_paper_folder(root / "test_all", [1], rng)
    if simulated:
        (root / "SIMULATED.json").write_text(json.dumps({"seed": 5, "train_count": 6, "test_count": 1}))
    path = root / "train_all" / "00002.bin"
    path.write_bytes(damage(path.read_bytes()))
    splits, _ = load_event_splits(tmp_path, simulated)
    fix = (f"simulate-nmnist --train-count 6 --test-count 1 --seed 5 --out {root}" if simulated
           else "datasets fetch nmnist")
    for read in (lambda: splits["train"].events(1), lambda: splits["train"].inputs([0, 1], 300),
                 lambda: ev.check_recordings(splits["train"])):
        with pytest.raises(UserError, match=message) as info:
            read()
        assert str(path) in str(info.value) and fix in str(info.value)
    # a run reads the next batch in a background thread: the UserError comes through as such
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(UserError, match=message):
            pool.submit(splits["train"].inputs, [1], 300).result()


def test_a_recording_removed_after_listing_names_the_file(tmp_path):
    rng = np.random.default_rng(16)
    write_paper_folder(tmp_path / "nmnist" / "train_all", range(1, 7), rng)
    write_paper_folder(tmp_path / "nmnist" / "test_all", [1], rng)
    splits, _ = load_event_splits(tmp_path)
    path = tmp_path / "nmnist" / "train_all" / "00003.bin"
    path.unlink()
    with pytest.raises(UserError, match="cannot be read") as info:
        splits["train"].events(2)
    assert str(path) in str(info.value) and "fetch nmnist" in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("file,label\n00001.bin,1\n00002.bin,two\n", "line 3 .* the label 'two' is not a whole number"),
    ("file,label\n00001.bin,1\n00002.bin,-2\n", "line 3 .* the label '-2' is not a whole number"),
    ("file,label\n00001.bin,1.0\n", "line 2 .* the label '1.0' is not a whole number"),
    ("file,label\n00001.bin,²\n", "line 2 .* the label '²' is not a whole number"),
    ("file,label\n00001.bin,1\n00002.bin,10\n", "line 3 .* the label 10 is outside 0-9"),
    ("file,label\n00001.bin,1,7\n", "line 2 .* it has 3 columns, expected 2"),
    ("file,label\n00001.bin\n", "line 2 .* it has 1 columns, expected 2"),
    ("file,label\n,4\n", "line 2 .* '' is not a recording's file name"),
    ("file,label\nrecording.bin,4\n", "line 2 .* 'recording.bin' is not a recording's file name"),
    ("file,label\n00001.bin,1\n00002.bin,2\n00001.bin,1\n", "lists 00001.bin twice \\(lines 2 and 4\\)"),
    ("", "the file is empty"),
    ("00001.bin,1\n", "line 1 is '00001.bin,1'"),
    ("file,label\n" + "".join(f"{n:05d}.bin,{n % 10}\n" for n in range(1, 8)) + "00099.bin,9\n",
     "listed in .* are missing .*00099.bin, line 9"),
    ("file,label\n" + "".join(f"{n:05d}.bin,{n % 10}\n" for n in range(1, 7)), "does not list .*00007.bin"),
])
def test_bad_rows_of_labels_csv_name_the_file_and_the_line(tmp_path, text, message):
    rng = np.random.default_rng(17)
    write_paper_folder(tmp_path / "nmnist" / "train_all", range(1, 8), rng)
    write_paper_folder(tmp_path / "nmnist" / "test_all", [1], rng)
    labels = tmp_path / "nmnist" / "train_all" / "labels.csv"
    labels.write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=message) as info:
        load_event_splits(tmp_path)
    assert str(labels) in str(info.value) and "fetch nmnist" in str(info.value)


def test_labels_csv_that_is_not_text_names_the_file(tmp_path):
    rng = np.random.default_rng(18)
    write_paper_folder(tmp_path / "nmnist" / "train_all", range(1, 7), rng)
    write_paper_folder(tmp_path / "nmnist" / "test_all", [1], rng)
    labels = tmp_path / "nmnist" / "train_all" / "labels.csv"
    labels.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="Cannot read") as info:
        load_event_splits(tmp_path)
    assert str(labels) in str(info.value)


@pytest.mark.parametrize("break_it, fragment", [
    (lambda root: shutil.rmtree(root / "test_all"), "test_all is missing"),
    (lambda root: [p.unlink() for p in (root / "test_all").iterdir()], "test_all/labels.csv is missing"),
    (lambda root: (root / "train_all" / "labels.csv").unlink(), "no labels.csv"),
    (lambda root: (root / "train_all" / "00005.bin").unlink(), "train_all/00005.bin, line 6"),
    (lambda root: [(root / "train_all" / "00006.bin").unlink(),
                   (root / "train_all" / "labels.csv").write_text(
                       "file,label\n" + "".join(f"{n:05d}.bin,{n % 10}\n" for n in range(1, 6)))],
     "train_all holds 5 recordings, but this simulated N-MNIST has 6"),
])
def test_an_incomplete_simulated_set_names_what_is_missing_and_the_command(tmp_path, break_it, fragment):
    rng = np.random.default_rng(19)
    root = tmp_path / "nmnist_simulated"
    write_paper_folder(root / "train_all", range(1, 7), rng)
    write_paper_folder(root / "test_all", [1, 2], rng)
    (root / "SIMULATED.json").write_text(json.dumps({"seed": 5, "train_count": 6, "test_count": 2}))
    load_event_splits(tmp_path, simulated=True)
    break_it(root)
    with pytest.raises(UserError) as info:
        load_event_splits(tmp_path, simulated=True)
    message = str(info.value)
    assert fragment in message, message
    assert f"`python -m lsm_core datasets simulate-nmnist --train-count 6 --test-count 2 --seed 5 --out {root}`" \
        in message
