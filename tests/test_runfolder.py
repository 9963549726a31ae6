"""The run folder: identity, refusal messages, logging, raster rows, history.csv."""
import math
from dataclasses import replace

import numpy as np
import pytest

from lsm_core.config import RunConfig
from lsm_core.errors import UserError
from lsm_core.runfolder import (
    HISTORY_COLUMNS,
    RunFolder,
    RunLog,
    history_to_csv,
    raster_rows,
    read_history_csv,
    run_identity,
)


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
