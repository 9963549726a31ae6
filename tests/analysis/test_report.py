"""The run report on synthetic run folders: complete, unfinished, missing and simulated-data runs; groups of
runs (--group-by, --best-of, --paper, --format, --plot)."""
import csv
import io
import json
import math
from dataclasses import asdict

import numpy as np
import pytest

from lsm_core.__main__ import main
from lsm_core.analysis.paper_results import PUBLISHED, match
from lsm_core.analysis.report import (
    collect_run,
    format_csv,
    format_table,
    group_runs,
    is_simulated,
    parse_best_of,
    parse_group_keys,
    parse_versions,
    plot_groups,
    plot_validation_curves,
)
from lsm_core.config import RunConfig
from lsm_core.errors import UserError
from lsm_core.runs.folder import open_run, run_config
from tests.damage import damage

HISTORY = [  # epoch, train_acc, valid_acc, test_acc
    (1, 0.50, 0.40, 0.41), (2, 0.60, 0.70, 0.66), (3, 0.65, 0.70, 0.69), (4, 0.80, 0.65, 0.70)]


def make_run(root, version, model="NALSM", scalars=None, readout_epochs=4, history=HISTORY, stage="complete",
             dims=(4, 5, 6), extra_params=None, timings=None, dataset="mnist", net_num=1, summary=None,
             branching=None):
    """A run folder as the pipeline leaves it at `stage`: "init", "counts", "readout" or "complete".

    `summary`: more summary.json content (e.g. mean_rate_hz); `branching`: writes branching.json with this mean.
    """
    scalars = {"ASTRO_W_SCALING": 0.015} if scalars is None else scalars
    config = RunConfig(model=model, dataset=dataset, gpu="cpu", version=version, net_num=net_num, batch_size=10,
                       batches_per_block=2, scalars=scalars, train_samples=100, valid_samples=40,
                       test_samples=60, init_samples=500, readout_epochs=readout_epochs, dims=dims,
                       output_root=str(root))
    folder = root / f"ver_{version}"
    (folder / "blocks").mkdir(parents=True)
    params = {"identity": {"seed": 1, "dims": list(dims)}, "run": {"config": asdict(config)}, "seed": 1,
              **(extra_params or {})}
    (folder / "params.json").write_text(json.dumps(params))
    (folder / "timings.json").write_text(json.dumps(timings or {"init": 10.0}))
    if branching is not None:
        (folder / "branching.json").write_text(json.dumps({"mean": branching, "samples": 20}))
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
        (folder / "summary.json").write_text(json.dumps({"complete": True, "n_res": int(np.prod(dims)),
                                                         **(summary or {})}))
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
    with pytest.raises(UserError, match="params.json is damaged: it cannot be read"):
        open_run(1, tmp_path)
    (folder / "params.json").unlink()
    with pytest.raises(UserError, match="has no params.json, so it is not a run folder"):
        open_run(1, tmp_path)


# ----------------------------------------------------------------------------------------------
# Groups of runs
# ----------------------------------------------------------------------------------------------

LIQUID_1000 = (10, 10, 10)


def make_result(root, version, valid, test, **kwargs):
    """A complete run of a 1000-neuron liquid whose best validation accuracy is `valid`, with `test` there."""
    kwargs.setdefault("dims", LIQUID_1000)
    return make_run(root, version, history=[(1, 0.9, valid, test)], readout_epochs=1, **kwargs)


def report(root, *args):
    """`python -m lsm_core report 1-99 --output-root ROOT ARGS...` -> its exit status."""
    return main(["report", "1-99", "--output-root", str(root), *args])


def csv_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


def test_groups_give_means_and_sample_sds_of_complete_runs(tmp_path, capsys):
    for version, (net, valid, test, rate, bf, init) in enumerate([
            (0, 0.955, 0.95, 10.0, 1.0, 10.0), (1, 0.965, 0.96, 12.0, None, 20.0),
            (2, 0.985, 0.97, 17.0, 1.2, 30.0)], start=1):
        make_result(tmp_path, version, valid, test, net_num=net, branching=bf,
                    summary={"mean_rate_hz": {"valid": 99.0, "test": rate, "train": 99.0}},
                    timings={"init": init, "spike_counts_valid": init, "readout": 2 * init})
    make_run(tmp_path, 4, dims=LIQUID_1000, net_num=3, stage="counts")           # incomplete: not counted
    make_result(tmp_path, 5, 0.90, 0.89, scalars={"ASTRO_W_SCALING": 0.1})       # a group of one run

    groups = group_runs([collect_run(v, tmp_path) for v in range(1, 6)], ["model", "dataset", "n_res",
                                                                           "ASTRO_W_SCALING"])
    assert [(g.key["ASTRO_W_SCALING"], len(g.counted), g.incomplete) for g in groups] == [(0.015, 3, 1), (0.1, 1, 0)]
    g = groups[0]
    assert g.key == {"model": "NALSM", "dataset": "mnist", "n_res": 1000, "ASTRO_W_SCALING": 0.015}
    # by hand: mean (0.95 + 0.96 + 0.97) / 3 = 0.96; sample sd sqrt((0.01² + 0 + 0.01²) / 2) = 0.01
    assert g.test_acc.mean == pytest.approx(0.96) and g.test_acc.sd == pytest.approx(0.01)
    valid_mean = (0.955 + 0.965 + 0.985) / 3
    valid_sd = math.sqrt(sum((v - valid_mean) ** 2 for v in (0.955, 0.965, 0.985)) / 2)
    assert (g.valid_acc.mean, g.valid_acc.sd) == (pytest.approx(valid_mean), pytest.approx(valid_sd))
    assert (g.rate_hz.mean, g.rate_hz.sd) == (pytest.approx(13.0), pytest.approx(math.sqrt(13.0)))  # (9+1+16)/2
    assert (g.branching.mean, g.branching.sd, g.branching.n) == (pytest.approx(1.1), pytest.approx(math.sqrt(0.02)), 2)
    assert g.time_s("total") == pytest.approx(80.0) and g.time_s("init") == pytest.approx(20.0)
    assert groups[1].test_acc.sd is None and groups[1].branching.n == 0

    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING") == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split()[:7] == ["model", "dataset", "n_res", "ASTRO_W_SCALING", "n", "incomplete", "test%@best"]
    assert "96.00 ± 1.00" in lines[1] and "13.00 ± 3.61" in lines[1] and "1.100 ± 0.141 (n=2)" in lines[1]
    assert "1m20s" in lines[1]                                     # mean wall time 80 s
    assert "89.00 ± -" in lines[2]                                 # n = 1: no sd
    assert "not grouped (no readable run folder)" in text          # VERSIONs 6-99 do not exist

    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING", "--csv") == 0
    rows = csv_rows(capsys.readouterr().out)
    assert [(r["n"], r["incomplete"], r["versions"]) for r in rows] == [("3", "1", "1 2 3"), ("1", "0", "5")]
    assert float(rows[0]["test_acc_mean"]) == pytest.approx(0.96)
    assert float(rows[0]["test_acc_sd"]) == pytest.approx(0.01)
    assert float(rows[0]["wall_s_mean"]) == pytest.approx(80.0) and rows[0]["branching_n"] == "2"
    assert rows[1]["test_acc_sd"] == "" and rows[1]["branching_mean"] == ""


def test_csv_of_groups_has_the_documented_columns_and_fractions(tmp_path, capsys):
    make_result(tmp_path, 1, 0.962, 0.958, net_num=0, branching=1.25,
                summary={"mean_rate_hz": {"test": 30.0}})
    make_result(tmp_path, 2, 0.963, 0.961, net_num=1, summary={"mean_rate_hz": {"test": 32.0}})
    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING", "--format", "csv", "--paper") == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split(",")
    assert header[:4] == ["model", "dataset", "n_res", "ASTRO_W_SCALING"]
    assert {"n", "incomplete", "test_acc_mean", "test_acc_sd", "valid_acc_mean", "valid_acc_sd", "rate_hz_mean",
            "rate_hz_sd", "branching_mean", "branching_sd", "branching_n", "wall_s_mean", "paper_test_acc_mean",
            "paper_test_acc_sd", "paper_n", "paper_diff_sd", "paper_branching_mean",
            "paper_branching_sd"} <= set(header)
    (row,) = csv_rows(out)
    assert float(row["test_acc_mean"]) == pytest.approx(0.9595)
    assert float(row["valid_acc_mean"]) == pytest.approx(0.9625)
    assert all(0.0 <= float(row[k]) <= 1.0 for k in ("test_acc_mean", "test_acc_sd", "valid_acc_mean",
                                                     "paper_test_acc_mean", "paper_test_acc_sd"))
    assert float(row["paper_test_acc_mean"]) == pytest.approx(0.9596)
    assert float(row["rate_hz_mean"]) == pytest.approx(31.0) and float(row["wall_s_mean"]) == pytest.approx(10.0)


def test_best_of_keeps_per_liquid_the_best_validation_run_and_says_so(tmp_path, capsys):
    w = "INTIAL_ABS_W_SCLR"
    lsm = {"model": "LSM"}
    make_result(tmp_path, 1, 0.95, 0.94, net_num=0, scalars={w: 0.9}, **lsm)
    make_result(tmp_path, 2, 0.96, 0.93, net_num=0, scalars={w: 1.0}, **lsm)   # best validation, worse test
    make_result(tmp_path, 3, 0.97, 0.95, net_num=1, scalars={w: 0.9}, **lsm)   # tie: the earlier VERSION wins
    make_result(tmp_path, 4, 0.97, 0.96, net_num=1, scalars={w: 1.0}, **lsm)
    make_result(tmp_path, 5, 0.96, 0.955, net_num=2, scalars={w: 1.0}, **lsm)
    make_run(tmp_path, 6, net_num=2, scalars={w: 0.9}, dims=LIQUID_1000, stage="counts", **lsm)   # not a candidate

    records = [collect_run(v, tmp_path) for v in range(1, 7)]
    (group,) = group_runs(records, ["model", "dataset", "n_res"], parse_best_of(w, ["model", "dataset", "n_res"]))
    assert [r.version for r in group.counted] == [2, 3, 5]
    assert group.picked == "1.0 ×2, 0.9 ×1" and group.incomplete == 1
    assert group.test_acc.mean == pytest.approx((0.93 + 0.95 + 0.955) / 3)
    assert group.paper.acc_mean == 95.30 and group.paper.best_of == (w,)      # Table 1: LSM, best weight per liquid

    assert report(tmp_path, "--group-by", "model,dataset,n_res", "--best-of", w, "--paper") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "1.0 ×2, 0.9 ×1" in lines[1] and "95.30 ± 0.10" in lines[1]
    note = next(line for line in lines if line.startswith("best-of"))
    assert "per liquid" in note and "validation accuracy" in note and "paper chose by test accuracy" in note
    assert report(tmp_path, "--group-by", "model,dataset,n_res", "--best-of", w, "--csv") == 0
    (row,) = csv_rows(capsys.readouterr().out)
    assert "per liquid by validation accuracy" in row["selection"] and row["selection"].endswith("1.0 ×2, 0.9 ×1")
    assert row["n"] == "3" and row["versions"] == "2 3 5"


def test_paper_numbers_and_the_difference_in_published_sds(tmp_path, capsys):
    for version, test in enumerate((0.958, 0.960, 0.962), start=1):
        make_result(tmp_path, version, test + 0.001, test, net_num=version)
    make_result(tmp_path, 4, 0.95, 0.94, scalars={"ASTRO_W_SCALING": 0.3})     # not published
    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING", "--paper") == 0
    lines = capsys.readouterr().out.splitlines()
    # by hand: our mean 96.00 %, published 95.96 ± 0.13 -> (96.00 - 95.96) / 0.13 = +0.31 sd
    assert "95.96 ± 0.13 (n=10)" in lines[1] and "+0.31" in lines[1] and "1.246 ± 0.023" in lines[1]
    assert lines[2].split()[-3:] == ["-", "-", "-"]
    assert any(line.startswith("paper: Ivanov & Michmizos, NeurIPS 2021") for line in lines)

    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING", "--paper", "--csv") == 0
    rows = csv_rows(capsys.readouterr().out)
    assert float(rows[0]["paper_diff_sd"]) == pytest.approx((96.00 - 95.96) / 0.13, abs=1e-4)
    assert (rows[0]["paper_test_acc_mean"], rows[0]["paper_test_acc_sd"], rows[0]["paper_n"]) == \
        ("0.9596", "0.0013", "10")
    assert (rows[0]["paper_branching_mean"], rows[0]["paper_branching_sd"]) == ("1.246", "0.023")
    assert rows[1]["paper_test_acc_mean"] == rows[1]["paper_diff_sd"] == ""
    # the scalar need not be a group key when all runs share it; mixing values matches nothing
    records = [collect_run(v, tmp_path) for v in range(1, 5)]
    (same,) = group_runs(records[:3], ["model", "dataset", "n_res"])
    (mixed,) = group_runs(records, ["model", "dataset", "n_res"])
    assert same.paper.acc_mean == 95.96 and mixed.paper is None


def test_published_numbers_are_matched_with_a_float_tolerance():
    row = match("NALSM", "mnist", 1000, {"ASTRO_W_SCALING": 0.1 + 0.2 - 0.285})
    assert (row.acc_mean, row.acc_sd, row.n, row.table1) == (95.96, 0.13, 10, True)
    assert match("NALSM", "mnist", 8000, {"ASTRO_W_SCALING": 0.0075}).acc_mean == 97.49
    assert match("LSM_APSTDP", "nmnist", 1000, {"INTIAL_ABS_W_SCLR": 1.0},
                 ("STDP_NEURON_RATE_RANGE", "STDP_NEURON_RATE_THESHOLD")).acc_mean == 95.23
    assert match("LSM_APSTDP", "nmnist", 1000, {"INTIAL_ABS_W_SCLR": 1.0}) is None
    assert match("LSM_STDP", "mnist", 1000, {}).acc_mean == 89.47
    assert match("NALSM", "mnist", 1000, {"ASTRO_W_SCALING": 0.3}) is None
    table1 = {(p.model, p.dataset, p.n_res) for p in PUBLISHED if p.table1}
    assert len(table1) == 12 and all(p.acc_sd >= 0 for p in PUBLISHED)


def test_simulated_runs_are_never_grouped_with_real_ones(tmp_path, capsys):
    nmnist = {"dataset": "nmnist"}
    make_result(tmp_path, 1, 0.96, 0.959, net_num=0, **nmnist)
    make_result(tmp_path, 2, 0.95, 0.948, net_num=0, extra_params={"dataset_simulated": True}, **nmnist)
    make_result(tmp_path, 3, 0.95, 0.950, net_num=1, extra_params={"dataset_simulated": True}, **nmnist)
    records = [collect_run(v, tmp_path) for v in (1, 2, 3)]
    for keys in (["model", "dataset", "n_res"], ["model"]):
        groups = group_runs(records, keys)
        assert [([r.version for r in g.runs], g.simulated) for g in groups] == [([1], False), ([2, 3], True)]
    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING", "--paper") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "nmnist (simulated)" in lines[2] and "nmnist (simulated)" not in lines[1]
    assert "95.90 ± 0.16 (n=10) †" in lines[2] and "95.90 ± 0.16 (n=10)" in lines[1] and "†" not in lines[1]
    assert any(line.startswith("† published on the real recordings") for line in lines)
    assert report(tmp_path, "--group-by", "model", "--paper", "--csv") == 0
    rows = csv_rows(capsys.readouterr().out)
    assert [(r["simulated"], r["n"]) for r in rows] == [("0", "1"), ("1", "2")]
    assert report(tmp_path, "--group-by", "dataset", "--csv") == 0
    rows = csv_rows(capsys.readouterr().out)
    assert [r["dataset"] for r in rows] == ["nmnist", "nmnist (simulated)"]
    assert report(tmp_path, "--group-by", "model") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["model", "data"] and lines[2].split()[:2] == ["NALSM", "simulated"]


def test_markdown_tables(tmp_path, capsys):
    make_result(tmp_path, 1, 0.96, 0.959, net_num=0)
    make_result(tmp_path, 2, 0.95, 0.950, net_num=1)
    for args, body in ((("--group-by", "model,dataset,n_res", "--paper"), 1), ((), 99)):
        assert report(tmp_path, "--format", "md", *args) == 0
        lines = capsys.readouterr().out.splitlines()
        table = [line for line in lines if line.startswith("|")]
        assert lines[:len(table)] == table and len(table) == 2 + body    # header, separator, groups / runs
        assert len({line.count("|") for line in table}) == 1 and all(line.endswith("|") for line in table)
        assert set(table[1]) <= set("|:-")
        if args:
            assert table[2].startswith("| NALSM | mnist | 1000 | 2 | 0 | 95.45 ± 0.64 |")
            assert lines[len(table)] == "" and lines[len(table) + 1].startswith("paper: ")
        else:
            assert table[2].startswith("| 1 | complete | NALSM | mnist |")


def test_bad_group_keys_and_options_are_user_errors(tmp_path, capsys):
    make_result(tmp_path, 1, 0.96, 0.959)
    with pytest.raises(UserError, match="model, dataset, n_res, net_num, ASTRO_W_SCALING"):
        parse_group_keys("model,colour")
    assert parse_group_keys("model, dataset,model,net_num") == ["model", "dataset", "net_num"]
    for args, message in [
            (("--group-by", "model,liquid_colour"), "unknown key 'liquid_colour'"),
            (("--group-by", "model,ASTRO_W_SCALING", "--best-of", "ASTRO_W_SCALING"), "also in --group-by"),
            (("--group-by", "model", "--best-of", "n_res"), "not a prompted scalar"),
            (("--best-of", "ASTRO_W_SCALING"), "add --group-by"),
            (("--paper",), "add --group-by"),
            (("--csv", "--format", "md"), "contradict"),
            (("--group-by", "model,dataset", "--plot", str(tmp_path / "g.png")), "exactly one prompted scalar")]:
        assert report(tmp_path, *args) == 2, args
        captured = capsys.readouterr()
        assert message in " ".join(captured.err.split()) and captured.out == "", args
    assert not (tmp_path / "g.png").exists()


def test_group_plot_of_accuracy_against_the_swept_scalar(tmp_path, capsys):
    import matplotlib.image

    for version, (w, net, test) in enumerate([(0.015, 0, 0.958), (0.015, 1, 0.961), (0.05, 0, 0.957),
                                              (0.05, 1, 0.955), (0.2, 0, 0.951)], start=1):
        make_result(tmp_path, version, test + 0.002, test, net_num=net, scalars={"ASTRO_W_SCALING": w})
    path = tmp_path / "sweep.png"
    assert report(tmp_path, "--group-by", "model,dataset,n_res,ASTRO_W_SCALING", "--plot", str(path)) == 0
    assert "accuracy against ASTRO_W_SCALING" in capsys.readouterr().err
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0
    groups = group_runs([collect_run(v, tmp_path) for v in range(1, 6)], ["model", "ASTRO_W_SCALING", "net_num"])
    with pytest.raises(UserError, match="exactly one prompted scalar"):
        plot_groups(groups, ["model", "ASTRO_W_SCALING", "INTIAL_ABS_W_SCLR"], tmp_path / "two.png")
    assert plot_groups(groups, ["model", "ASTRO_W_SCALING", "net_num"], tmp_path / "by_liquid.png").exists()


# ----------------------------------------------------------------------------------------------
# Damaged run files: the run's status says which, the other runs are unaffected
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished LSM run made by the pipeline (with its manifest.json); figures are not rendered."""
    from lsm_core import storage
    from lsm_core.analysis import plots
    from lsm_core.runs import pipeline

    tmp = tmp_path_factory.mktemp("finished")
    config = RunConfig(model="LSM", dataset="mnist", gpu="cpu", version=1, net_num=1, batch_size=10,
                       batches_per_block=2, scalars={"INTIAL_ABS_W_SCLR": 3.0}, train_samples=20, valid_samples=20,
                       test_samples=20, readout_epochs=2, duration_ms=20, seed=11, dims=(3, 3, 3),
                       output_root=str(tmp / "runs"), networks_dir=str(tmp / "networks"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "atomic_savefig", lambda fig, path, **kwargs: storage.atomic_write_bytes(path, b"fig"))
        pipeline.run(config, log=lambda message: None)
    folder = tmp / "runs" / "ver_1"
    assert (folder / "manifest.json").exists() and collect_run(1, tmp / "runs").status == "complete"
    return folder


def copies(finished_run, root, versions):
    """Copies of the finished run as ver_<v> under `root`."""
    import shutil
    for version in versions:
        shutil.copytree(finished_run, root / f"ver_{version}")
    return root


RESULT = ("model", "liquid", "n_res", "scalars", "test_acc_at_best", "best_epoch", "best_valid_acc",
          "final_train_acc", "epochs", "times_s", "rate_hz")


def result_of(record):
    return {name: getattr(record, name) for name in RESULT}


@pytest.mark.parametrize("name", ["summary.json", "history.csv", "timings.json", "params.json"])
def test_a_damaged_file_marks_its_run_damaged_and_leaves_the_other_runs_alone(finished_run, tmp_path, capsys, name):
    root = copies(finished_run, tmp_path, (1, 2, 3, 4))
    for version, how in ((2, "half"), (3, "zeros"), (4, "flip")):
        damage(root / f"ver_{version}" / name, how)
    expected = collect_run(1, finished_run.parent)
    records = [collect_run(v, root) for v in (1, 2, 3, 4)]
    assert [r.status for r in records] == ["complete"] + [f"damaged: {name}"] * 3
    assert result_of(records[0]) == result_of(expected)
    assert not any(r.complete for r in records[1:])

    assert main(["report", "1-4", "--output-root", str(root)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    assert "complete" in lines[1] and all(f"damaged: {name}" in line for line in lines[2:])
    assert "Traceback" not in err
    assert main(["report", "1-4", "--output-root", str(root), "--csv"]) == 0
    rows = csv_rows(capsys.readouterr().out)
    assert [row["status"] for row in rows] == ["complete"] + [f"damaged: {name}"] * 3
    assert float(rows[0]["test_acc_at_best"]) == expected.test_acc_at_best

    assert main(["report", "1-4", "--output-root", str(root), "--group-by", "model,n_res", "--csv"]) == 0
    (group,) = csv_rows(capsys.readouterr().out)
    assert (group["n"], group["versions"]) == ("1", "1")               # only the undamaged run is counted
    assert group["incomplete"] == ("0" if name == "params.json" else "3")   # no params: not even grouped
    assert float(group["test_acc_mean"]) == expected.test_acc_at_best and group["test_acc_sd"] == ""
    assert main(["report", "1-4", "--output-root", str(root), "--group-by", "model,n_res"]) == 0
    out, err = capsys.readouterr()
    if name == "params.json":
        assert f"ver_2 (damaged: {name}), ver_3 (damaged: {name}), ver_4 (damaged: {name})" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("how", ["delete", "half"])
@pytest.mark.parametrize("name", ["counts_train.npz", "rasters.npz", "readout.npz"])
def test_a_recorded_file_deleted_or_cut_short_marks_the_run_damaged(finished_run, tmp_path, name, how):
    root = copies(finished_run, tmp_path, (1, 2))
    damage(root / "ver_2" / name, how)
    assert [collect_run(v, root).status for v in (1, 2)] == ["complete", f"damaged: {name}"]


def test_several_damaged_files_are_all_named(finished_run, tmp_path):
    root = copies(finished_run, tmp_path, (1,))
    damage(root / "ver_1" / "summary.json", "flip")
    damage(root / "ver_1" / "counts_test.npz", "delete")
    assert collect_run(1, root).status == "damaged: summary.json, counts_test.npz"


def test_a_run_without_or_with_a_damaged_manifest_reports_as_before(finished_run, tmp_path, capsys):
    """Runs made before manifests existed, or whose manifest.json is damaged: files checked by format alone."""
    root = copies(finished_run, tmp_path, (1, 2, 3, 4))
    (root / "ver_1" / "manifest.json").unlink()
    damage(root / "ver_2" / "manifest.json", "half")
    for version in (3, 4):
        (root / f"ver_{version}" / "manifest.json").unlink()
    damage(root / "ver_3" / "history.csv", "half")
    damage(root / "ver_4" / "summary.json", "flip")
    expected = result_of(collect_run(1, finished_run.parent))
    records = [collect_run(v, root) for v in (1, 2, 3, 4)]
    assert [r.status for r in records] == ["complete", "complete", "damaged: history.csv", "damaged: summary.json"]
    assert result_of(records[0]) == expected and result_of(records[1]) == expected
    assert main(["report", "1-4", "--output-root", str(root)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_damaged_branching_json_is_named_not_dropped(tmp_path):
    """branching.json is not in the manifest (the branching command writes it); unreadable, it is still damage."""
    for version in (1, 2):
        make_result(tmp_path, version, 0.9, 0.9, branching=1.25)
    damage(tmp_path / "ver_2" / "branching.json", "half")
    records = [collect_run(v, tmp_path) for v in (1, 2)]
    assert [(r.status, r.branching) for r in records] == [("complete", 1.25), ("damaged: branching.json", None)]
    (group,) = group_runs(records, ["model"])
    assert group.branching.n == 1 and len(group.counted) == 1


@pytest.mark.parametrize("how", ["half", "zeros", "flip", "central directory"])
def test_a_damaged_init_checkpoint_of_an_unfinished_run_is_named(tmp_path, capsys, how):
    """A run still in its init phase: init_state.npz tells how far it got, so its damage is named too."""
    make_run(tmp_path, 1, stage="init")
    path = make_run(tmp_path, 2, stage="init") / "init_state.npz"
    if how == "central directory":                         # zipfile's NotImplementedError, not a ValueError
        data = path.read_bytes()
        at = data.rfind(b"PK\x01\x02") + 6                  # 'version needed to extract' of the last member
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    else:
        damage(path, how)
    assert [collect_run(v, tmp_path).status for v in (1, 2)] == ["init 40%", "damaged: init_state.npz"]
    assert main(["report", "1", "2", "--output-root", str(tmp_path)]) == 0
    assert "Traceback" not in capsys.readouterr().err
