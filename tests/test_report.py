"""The run report on synthetic run folders: complete, unfinished, missing and simulated-data runs."""
import csv
import io
import json
from dataclasses import asdict

import numpy as np
import pytest

from lsm_core.__main__ import main
from lsm_core.config import RunConfig
from lsm_core.errors import UserError
from lsm_core.report import (
    collect_run,
    format_csv,
    format_table,
    is_simulated,
    parse_versions,
    plot_validation_curves,
)
from lsm_core.runfolder import open_run, run_config

HISTORY = [  # epoch, train_acc, valid_acc, test_acc
    (1, 0.50, 0.40, 0.41), (2, 0.60, 0.70, 0.66), (3, 0.65, 0.70, 0.69), (4, 0.80, 0.65, 0.70)]


def make_run(root, version, model="NALSM", scalars=None, readout_epochs=4, history=HISTORY, stage="complete",
             dims=(4, 5, 6), extra_params=None, timings=None):
    """A run folder as the pipeline leaves it at `stage`: "init", "counts", "readout" or "complete"."""
    scalars = {"ASTRO_W_SCALING": 0.015} if scalars is None else scalars
    config = RunConfig(model=model, dataset="mnist", gpu="cpu", version=version, net_num=1, batch_size=10,
                       batches_per_block=2, scalars=scalars, train_samples=100, valid_samples=40,
                       test_samples=60, init_samples=500, readout_epochs=readout_epochs, dims=dims,
                       output_root=str(root))
    folder = root / f"ver_{version}"
    (folder / "blocks").mkdir(parents=True)
    params = {"identity": {"seed": 1, "dims": list(dims)}, "run": {"config": asdict(config)}, "seed": 1,
              **(extra_params or {})}
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "timings.json").write_text(json.dumps(timings or {"init": 10.0}))
    if stage == "init":
        np.savez(folder / "init_state.npz", done=np.int64(200), weights=np.zeros((1, 3)))
        return folder
    np.savez(folder / "W_INI.npz", weights=np.zeros(3))
    if stage == "counts":
        np.savez(folder / "counts_valid.npz", counts=np.zeros((40, 3)))
        for b in range(2):                                  # 2 of the 3 test blocks of 20 samples
            np.savez(folder / "blocks" / f"test_block_{b:05d}.npz", counts=np.zeros((20, 3)))
        return folder
    for split in ("valid", "test", "train"):
        np.savez(folder / f"counts_{split}.npz", counts=np.zeros((2, 3)))
    lines = ["epoch,train_loss,valid_loss,train_acc,valid_acc,test_acc"]
    lines += [f"{e},1.0,1.0,{tr},{va},{te}" for e, tr, va, te in history]
    (folder / "history.csv").write_text("\n".join(lines) + "\n")
    if stage == "complete":
        (folder / "summary.json").write_text(json.dumps({"complete": True, "n_res": int(np.prod(dims))}))
    return folder


def test_complete_run_gives_the_accuracy_at_the_first_best_validation_epoch(tmp_path):
    make_run(tmp_path, 3, timings={"init": 10.0, "spike_counts_valid": 20.0, "spike_counts_test": 30.0,
                                   "readout": 5.5})
    r = collect_run(3, tmp_path)
    assert r.status == "complete"
    assert (r.best_epoch, r.best_valid_acc, r.test_acc_at_best, r.final_train_acc) == (2, 0.70, 0.66, 0.80)
    assert (r.model, r.dataset, r.liquid, r.n_res, r.epochs, r.readout_epochs) == \
        ("NALSM", "mnist", "4x5x6", 120, 4, 4)
    assert r.scalars == {"ASTRO_W_SCALING": 0.015}
    assert r.times_s == {"init": 10.0, "spike_counts": 50.0, "readout": 5.5, "total": 65.5}
    assert not r.simulated


def test_unfinished_runs_report_how_far_they_got(tmp_path):
    make_run(tmp_path, 1, stage="init")
    make_run(tmp_path, 2, stage="counts")
    make_run(tmp_path, 3, stage="readout", history=HISTORY[:3], readout_epochs=10)
    make_run(tmp_path, 4, stage="readout")                          # all epochs, no summary.json yet
    make_run(tmp_path, 5, readout_epochs=8)                         # finished once, re-run with more epochs
    (tmp_path / "ver_6").mkdir()
    statuses = [collect_run(v, tmp_path).status for v in range(1, 8)]
    # init: 200 of 500 samples; counts: valid 40 + 2 test blocks of 20 of 200 samples
    assert statuses == ["init 40%", "spike counts 40%", "readout 3/10", "finishing", "readout 4/8",
                        "no params.json", "missing"]
    r = collect_run(3, tmp_path)
    assert (r.best_epoch, r.test_acc_at_best) == (2, 0.66)          # best so far
    assert collect_run(1, tmp_path).best_epoch is None


def test_simulated_data_is_marked(tmp_path):
    make_run(tmp_path, 1, extra_params={"dataset_simulated": True})
    make_run(tmp_path, 2, extra_params={"data": {"dataset_name": "nmnist-simulated"}})
    make_run(tmp_path, 3, extra_params={"dataset_simulated": False})
    records = [collect_run(v, tmp_path) for v in (1, 2, 3)]
    assert [r.simulated for r in records] == [True, True, False]
    assert records[0].dataset_label == "mnist (simulated)"
    assert "mnist (simulated)" in format_table(records)
    rows = list(csv.DictReader(io.StringIO(format_csv(records))))
    assert [row["simulated"] for row in rows] == ["1", "1", "0"]


def test_is_simulated_looks_everywhere_but_only_at_simulated_keys_and_dataset_names():
    assert is_simulated({"a": [{"b": {"nmnist_simulated": 1}}]})
    assert is_simulated({"config": {"dataset": "Simulated N-MNIST"}})
    assert not is_simulated({"note": "simulated", "dataset": "nmnist", "simulated_x": 0})


def test_table_and_csv_align_runs_of_different_models(tmp_path):
    make_run(tmp_path, 1)
    make_run(tmp_path, 2, model="LSM", scalars={"INTIAL_ABS_W_SCLR": 1.0}, stage="counts")
    records = [collect_run(v, tmp_path) for v in (1, 2, 9)]
    lines = format_table(records).splitlines()
    assert len(lines) == 4
    header = lines[0].split()
    assert header[:6] == ["VERSION", "status", "model", "dataset", "liquid", "N_res"]
    assert {"ASTRO_W_SCALING", "INTIAL_ABS_W_SCLR", "test%@best"} <= set(header)
    # every column starts at the same place in every line (status text is left-aligned)
    start = lines[0].index("model")
    assert all(line[start:].startswith(word) for line, word in zip(lines[1:], ("NALSM", "LSM", "-")))
    assert "66.00" in lines[1] and "missing" in lines[3]
    rows = list(csv.DictReader(io.StringIO(format_csv(records))))
    assert rows[0]["test_acc_at_best"] == "0.66" and rows[0]["best_epoch"] == "2"
    assert rows[0]["ASTRO_W_SCALING"] == "0.015" and rows[0]["INTIAL_ABS_W_SCLR"] == ""
    assert rows[1]["status"] == "spike counts 40%" and rows[1]["INTIAL_ABS_W_SCLR"] == "1.0"
    assert rows[2]["status"] == "missing" and rows[2]["model"] == ""


def test_validation_curves_plot(tmp_path):
    make_run(tmp_path, 1)
    make_run(tmp_path, 2, stage="counts")
    path = plot_validation_curves([collect_run(v, tmp_path) for v in (1, 2)], tmp_path / "curves.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_command_prints_table_or_csv_and_never_fails_on_missing_runs(tmp_path, capsys):
    make_run(tmp_path, 1)
    assert main(["report", "1", "2", "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "missing" in out
    assert main(["report", "1-2", "--output-root", str(tmp_path), "--csv",
                 "--plot", str(tmp_path / "c.png")]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["version"] for row in rows] == ["1", "2"]
    assert (tmp_path / "c.png").exists()
    assert main(["report", "abc", "--output-root", str(tmp_path)]) == 2
    assert "bad VERSION 'abc'" in capsys.readouterr().err
    assert main(["report", "1", "--output-root", str(tmp_path), "--plot", str(tmp_path / "c.nosuchformat")]) == 2
    assert "cannot write the plot" in capsys.readouterr().err


def test_versions_ranges_and_errors():
    assert parse_versions(["3", "5-7", "3", "6"]) == [3, 5, 6, 7]
    for bad in ("-1", "7-5", "a-b", ""):
        with pytest.raises(UserError):
            parse_versions([bad])


def test_open_run_and_run_config(tmp_path):
    make_run(tmp_path, 1)
    with pytest.raises(UserError, match="there is no run VERSION 2"):
        open_run(2, tmp_path)
    folder, params = open_run(1, tmp_path)
    config = run_config(params, output_root=tmp_path / "moved")
    assert config.model == "NALSM" and config.dims == (4, 5, 6) and config.output_root == str(tmp_path / "moved")
    (folder / "params.json").write_text("{broken")
    with pytest.raises(UserError, match="no readable params.json"):
        open_run(1, tmp_path)
