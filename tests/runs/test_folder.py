"""The run folder: identity, refusal messages, logging, raster rows, history.csv; manifest.json and checked
reads."""
import hashlib
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lsm_core.config import RunConfig
from lsm_core.errors import DamagedFile, UserError
from lsm_core.runs import checks as run_checks
from lsm_core.runs.folder import (
    HISTORY_COLUMNS,
    MANIFEST_NAME,
    RERUN_TO_REPAIR,
    Manifest,
    RunFolder,
    RunLog,
    history_to_csv,
    raster_rows,
    read_history_csv,
    run_identity,
)
from lsm_core.storage import atomic_save_npz


def config(tmp_path, **changes):
    base = RunConfig(model="LSM", dataset="mnist", gpu="cpu", version=1, net_num=1, batch_size=10,
                     batches_per_block=1, scalars={"INTIAL_ABS_W_SCLR": 1.0}, seed=5,
                     output_root=str(tmp_path))
    return replace(base, **changes)


def test_identity_ignores_what_does_not_change_results(tmp_path):
    a = run_identity(config(tmp_path), (10, 10, 10), "abc")
    assert a == run_identity(config(tmp_path, gpu="0,1", readout_epochs=7, require_gpu=True,
                                    dims=(3, 3, 3)), (10, 10, 10), "abc")
    assert a != run_identity(config(tmp_path, seed=6), (10, 10, 10), "abc")
    assert a != run_identity(config(tmp_path), (10, 10, 10), "abd")
    assert a["dims"] == [10, 10, 10] and a["constants"]["neuron"]["tau_v"] == 64.0


def test_open_creates_then_resumes_then_refuses_a_different_run(tmp_path):
    folder = RunFolder(config(tmp_path))
    identity = run_identity(config(tmp_path), (2, 2, 2), "x")
    assert folder.open(identity, {}, overwrite=False) is False
    assert folder.open(identity, {}, overwrite=False) is True
    other = run_identity(config(tmp_path, batch_size=5), (2, 2, 2), "x")
    with pytest.raises(UserError) as error:
        folder.open(other, {}, overwrite=False)
    assert "batch_size: was 10, now 5" in str(error.value) and "--overwrite" in str(error.value)
    (folder.path / "stale.txt").write_text("old")
    assert folder.open(other, {}, overwrite=True) is False
    assert not (folder.path / "stale.txt").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path):
    folder = RunFolder(config(tmp_path))
    folder.path.mkdir(parents=True)
    (folder.path / "precious.txt").write_text("keep me")
    with pytest.raises(UserError, match="does not look like a run folder"):
        folder.open(run_identity(config(tmp_path), (2, 2, 2), "x"), {}, overwrite=True)
    assert (folder.path / "precious.txt").exists()


def test_run_log_appends_time_stamped_lines(tmp_path, capsys):
    log = RunLog(tmp_path / "run.log")
    log("first")
    log("second\nthird")
    lines = (tmp_path / "run.log").read_text().splitlines()
    assert [line.split("  ", 1)[1] for line in lines] == ["first", "second", "third"]
    assert "first" in capsys.readouterr().out


def test_raster_rows_are_evenly_spaced():
    np.testing.assert_array_equal(raster_rows(5), np.arange(5))
    rows = raster_rows(250)
    assert len(rows) == 20 and rows[0] == 0 and rows[-1] == 249
    assert np.all(np.diff(rows) >= 13)


def test_history_csv_round_trip(tmp_path):
    rows = [{"epoch": 1, "train_loss": 2.302585092994046, "valid_loss": 2.1000001, "train_acc": 0.1234,
             "valid_acc": 1 / 3, "test_acc": float("nan")},
            {"epoch": 2, "train_loss": np.float64(1.5), "valid_loss": np.float32(1.25), "train_acc": 0.5,
             "valid_acc": 0.75, "test_acc": 1.0}]
    text = history_to_csv(rows)
    assert text.splitlines()[0] == ",".join(HISTORY_COLUMNS)
    (tmp_path / "history.csv").write_text(text)
    back = read_history_csv(tmp_path / "history.csv")
    assert len(back) == 2 and back[0]["epoch"] == 1 and isinstance(back[0]["epoch"], int)
    for a, b in zip(rows, back):
        for name in HISTORY_COLUMNS:
            if isinstance(a[name], float) and math.isnan(a[name]):
                assert math.isnan(b[name])
            else:
                assert b[name] == float(a[name])
    assert history_to_csv(back) == text
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        read_history_csv(tmp_path / "bad.csv")


# ---- manifest.json: every write recorded, every read checked ------------------------------------------

def counts_arrays():
    return {"counts": np.arange(12, dtype=np.int32).reshape(3, 4), "labels": np.array([1, 2, 3])}


def flip_middle(path):
    data = path.read_bytes()
    middle = len(data) // 2
    path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])


def test_a_write_records_size_and_sha256(tmp_path):
    folder = RunFolder(config(tmp_path))
    path = folder.write_bytes("a.bin", b"hello")
    assert path.read_bytes() == b"hello"
    entry = {"size": 5, "sha256": hashlib.sha256(b"hello").hexdigest()}
    assert folder.manifest.entries["a.bin"] == entry
    on_disk = Manifest(folder.path / MANIFEST_NAME)
    assert on_disk.status == "ok" and on_disk.entries == {"a.bin": entry}
    folder.save_npz("blocks/test_block_00000.npz", **counts_arrays())
    data = folder.block_file("test", 0).read_bytes()
    assert Manifest(folder.path / MANIFEST_NAME).entries["blocks/test_block_00000.npz"] == \
        {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_a_write_killed_between_the_manifest_and_the_file_leaves_every_file_matching(tmp_path, monkeypatch):
    """The manifest names the coming version before the file is replaced, still accepting the file as it is
    (or its absence): a process killed in between leaves no file that reads as damaged."""
    from lsm_core.runs import folder as runfolder

    folder = RunFolder(config(tmp_path))
    folder.write_bytes("a.bin", b"old")
    original = runfolder.atomic_write_bytes

    def killed_before_the_file(path, data):
        if Path(path).name != MANIFEST_NAME:
            raise KeyboardInterrupt             # as if killed after the manifest, before the file
        return original(path, data)
    monkeypatch.setattr(runfolder, "atomic_write_bytes", killed_before_the_file)
    for name, data in (("a.bin", b"new content"), ("b.bin", b"first")):
        with pytest.raises(KeyboardInterrupt):
            folder.write_bytes(name, data)
    monkeypatch.setattr(runfolder, "atomic_write_bytes", original)
    again = RunFolder(config(tmp_path))                         # the next process
    assert again.read_text("a.bin") == "old" and again.read_text("b.bin") is None
    assert again.manifest.resized(again.path) == []
    again.write_bytes("a.bin", b"new content")                  # the next write settles the record
    assert again.manifest.entries["a.bin"] == {"size": 11, "sha256": hashlib.sha256(b"new content").hexdigest()}
    (again.path / "a.bin").write_bytes(b"old")                  # the old version is no longer accepted
    with pytest.raises(DamagedFile):
        RunFolder(config(tmp_path)).read_text("a.bin")


def test_reads_return_the_content_or_none_when_never_written(tmp_path):
    folder = RunFolder(config(tmp_path))
    assert folder.read_npz("counts_test.npz") is None and folder.read_json("summary.json") is None
    assert folder.read_text("history.csv") is None
    with pytest.raises(DamagedFile, match="counts_test.npz is damaged: it does not exist"):
        folder.load_npz("counts_test.npz")
    folder.save_npz("counts_test.npz", **counts_arrays())
    folder.write_json("summary.json", {"complete": True})
    folder.write_text("history.csv", "epoch\n1\n")
    np.testing.assert_array_equal(folder.read_npz("counts_test.npz")["counts"], counts_arrays()["counts"])
    assert folder.read_json("summary.json") == {"complete": True} and folder.read_text("history.csv") == "epoch\n1\n"


def damaged_reason(folder, name, check=None):
    with pytest.raises(DamagedFile) as damaged:
        folder.read_npz(name, check)
    assert damaged.value.path == folder.file(name)
    assert str(damaged.value).startswith(f"{folder.file(name)} is damaged: {damaged.value.reason}")
    return damaged.value


@pytest.mark.parametrize("how, reason", [
    ("delete", "it is missing, but manifest.json records it"),
    ("append", "bytes where manifest.json records"),
    ("half", "bytes where manifest.json records"),
    ("flip", "its SHA-256 differs from the one in manifest.json"),
    ("zeros", "its SHA-256 differs from the one in manifest.json")])
def test_a_recorded_file_that_changed_is_damaged(tmp_path, how, reason):
    folder = RunFolder(config(tmp_path), repair=RERUN_TO_REPAIR)
    path = folder.save_npz("counts_test.npz", **counts_arrays())
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "append":
        path.write_bytes(data + b"\0")
    elif how == "half":
        path.write_bytes(data[:len(data) // 2])
    elif how == "zeros":
        path.write_bytes(bytes(len(data)))
    else:
        flip_middle(path)
    damaged = damaged_reason(folder, "counts_test.npz")
    assert reason in damaged.reason and str(damaged).endswith(RERUN_TO_REPAIR)
    fresh = RunFolder(config(tmp_path))                     # a later process sees the same
    assert reason in damaged_reason(fresh, "counts_test.npz").reason


def test_a_file_failing_its_format_check_is_damaged(tmp_path):
    folder = RunFolder(config(tmp_path))
    folder.save_npz("counts_test.npz", **counts_arrays())

    def check(arrays):
        if "index" not in arrays:
            raise ValueError("it lacks the array 'index'")
    assert damaged_reason(folder, "counts_test.npz", check).reason == "it lacks the array 'index'"
    damaged = damaged_reason(folder, "counts_test.npz", lambda arrays: arrays["index"])     # a KeyError too
    assert "KeyError" in damaged.reason
    folder.write_json("timings.json", {"init": -1.0})
    with pytest.raises(DamagedFile, match="non-negative seconds"):
        folder.read_json("timings.json", run_checks.timings)


def unrecorded_files(tmp_path):
    """A run folder written before manifests existed: files, no manifest.json."""
    folder = RunFolder(config(tmp_path))
    folder.blocks_dir.mkdir(parents=True)
    atomic_save_npz(folder.file("counts_test.npz"), **counts_arrays())
    data = atomic_save_npz(folder.file("counts_valid.npz"), **counts_arrays()).read_bytes()
    folder.file("counts_valid.npz").write_bytes(data[:len(data) // 2])         # cut short
    return folder


def test_without_a_guard_reading_never_writes_the_manifest(tmp_path):
    folder = unrecorded_files(tmp_path)
    assert folder.manifest.status == "missing"
    assert folder.read_npz("counts_test.npz")["labels"].tolist() == [1, 2, 3]
    with pytest.raises(DamagedFile, match="cannot be read as an npz file"):      # checked by its format alone
        folder.read_npz("counts_valid.npz")
    assert not folder.file(MANIFEST_NAME).exists() and folder.manifest.entries == {}


def test_with_a_guard_a_file_missing_from_the_manifest_is_adopted_after_its_checks(tmp_path):
    guarded = []
    folder = unrecorded_files(tmp_path)
    folder = RunFolder(config(tmp_path), guard=lambda: guarded.append(1))
    data = folder.file("counts_test.npz").read_bytes()
    folder.read_npz("counts_test.npz")
    with pytest.raises(DamagedFile):
        folder.read_npz("counts_valid.npz")
    assert Manifest(folder.file(MANIFEST_NAME)).entries == {
        "counts_test.npz": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}   # not the damaged one
    with pytest.raises(DamagedFile):                         # not adopted after a failed check either
        folder.read_npz("counts_test.npz", lambda arrays: run_checks.expect(arrays, "index", "i", (3,)))
    flip_middle(folder.file("counts_test.npz"))              # from now on its SHA-256 is checked
    assert "SHA-256" in damaged_reason(RunFolder(config(tmp_path)), "counts_test.npz").reason


def test_rename_moves_the_record_and_remove_forgets_it(tmp_path):
    folder = RunFolder(config(tmp_path))
    folder.save_npz("counts_test.tmp.npz", **counts_arrays())
    record = folder.manifest.entries["counts_test.tmp.npz"]
    folder.rename("counts_test.tmp.npz", "counts_test.npz")
    entries = Manifest(folder.file(MANIFEST_NAME)).entries
    assert entries == {"counts_test.npz": record} and not folder.file("counts_test.tmp.npz").exists()
    assert folder.read_npz("counts_test.npz")["labels"].tolist() == [1, 2, 3]
    assert folder.read_npz("counts_test.tmp.npz") is None
    atomic_save_npz(folder.file("other.npz"), counts=np.zeros((3, 4), np.int32))    # unrecorded, renamed over it
    folder.rename("other.npz", "counts_test.npz")
    assert "counts_test.npz" not in Manifest(folder.file(MANIFEST_NAME)).entries
    assert folder.read_npz("counts_test.npz")["counts"].sum() == 0
    folder.save_npz("counts_test.npz", **counts_arrays())
    folder.remove("counts_test.npz")
    assert not folder.file("counts_test.npz").exists()
    assert Manifest(folder.file(MANIFEST_NAME)).entries == {}
    assert folder.read_npz("counts_test.npz") is None                # forgotten: not written yet, not damaged
    folder.remove("never_written.npz")                               # nothing to do


def test_is_current_only_for_the_same_source_and_an_intact_file(tmp_path):
    folder = RunFolder(config(tmp_path))
    folder.blocks_dir.mkdir(parents=True)
    path = folder.file("raster.png")
    path.write_bytes(b"a figure")
    assert not folder.is_current("raster.png", "inputs-1")          # not recorded
    folder.record(path, source="inputs-1")
    assert folder.is_current("raster.png", "inputs-1")
    assert RunFolder(config(tmp_path)).is_current("raster.png", "inputs-1")      # read back from manifest.json
    assert not folder.is_current("raster.png", "inputs-2")
    path.write_bytes(b"a figurE")
    assert not folder.is_current("raster.png", "inputs-1")
    path.unlink()
    assert not folder.is_current("raster.png", "inputs-1")
    folder.write_bytes("accuracy.png", b"drawn")                     # recorded without a source
    assert not folder.is_current("accuracy.png", "inputs-1")


@pytest.mark.parametrize("content", [b"", b'{"files": {"a": ', b"\0" * 40, b'{"files": []}',
                                     b'{"files": {"a": {"size": 1, "sha256": "abc"}}}', b"[1, 2]"])
def test_a_damaged_manifest_has_status_damaged_and_files_are_checked_by_format(tmp_path, content):
    folder = RunFolder(config(tmp_path))
    folder.save_npz("counts_test.npz", **counts_arrays())
    assert Manifest(folder.file(MANIFEST_NAME)).status == "ok"
    folder.file(MANIFEST_NAME).write_bytes(content)
    manifest = Manifest(folder.file(MANIFEST_NAME))
    assert manifest.status == "damaged" and manifest.entries == {}
    reader = RunFolder(config(tmp_path))
    assert reader.read_npz("counts_test.npz")["labels"].tolist() == [1, 2, 3]
    assert reader.file(MANIFEST_NAME).read_bytes() == content        # a reader leaves it as it is
    data = folder.file("counts_test.npz").read_bytes()
    folder.file("counts_test.npz").write_bytes(data[:len(data) // 2])
    with pytest.raises(DamagedFile, match="cannot be read as an npz file"):
        reader.read_npz("counts_test.npz")
    assert Manifest(tmp_path / "nowhere" / MANIFEST_NAME).status == "missing"
