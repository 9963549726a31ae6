"""lsm_core.analysis.readouts: readouts added to a finished run (the `readout` command), features from
stored counts, and summary.json's `readouts` list."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lsm_core.analysis.readouts import features_of, merge_entry, parse_features, readout_command
from lsm_core.config import RunConfig
from lsm_core.errors import UserError
from lsm_core.runs.folder import Manifest

REPO = Path(__file__).resolve().parents[2]


def tiny_config(root):
    return RunConfig(model="LSM", dataset="mnist", gpu="cpu", version=1, net_num=1, batch_size=10,
                     batches_per_block=2, scalars={"INTIAL_ABS_W_SCLR": 3.0}, train_samples=40, valid_samples=20,
                     test_samples=20, readout_epochs=3, duration_ms=30, seed=5, dims=(3, 3, 3),
                     output_root=str(root / "runs"), networks_dir=str(root / "networks"))


def run_quietly(config):
    from lsm_core import storage
    from lsm_core.analysis import plots
    from lsm_core.runs import pipeline

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "atomic_savefig", lambda fig, path, **kwargs: storage.atomic_write_bytes(path, b"fig"))
        return pipeline.run(config, log=lambda message: None)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("readouts")
    run_quietly(tiny_config(root))
    return root


@pytest.fixture
def run(finished, tmp_path):
    """A copy of the finished run: (root, its folder)."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    return tmp_path, tmp_path / "runs" / "ver_1"


def test_features_from_totals_and_from_time_bins():
    counts = np.arange(2 * 4 * 3).reshape(2, 4, 3)                       # [n, K=4, N=3]
    np.testing.assert_array_equal(features_of(counts, "counts"), counts.sum(axis=1))
    np.testing.assert_array_equal(features_of(counts, "bins"), counts)
    np.testing.assert_array_equal(features_of(counts, "bins:2"), counts[:, 0::2] + counts[:, 1::2])
    np.testing.assert_array_equal(features_of(counts, "bins:1")[:, 0], counts.sum(axis=1))
    totals = counts.sum(axis=1)                                          # a run stored totals only
    np.testing.assert_array_equal(features_of(totals, "counts"), totals)
    with pytest.raises(UserError, match="--count-bins 3"):
        features_of(counts, "bins:3")
    for bad in ("bins:0", "bins:x", "rates", "counts:2"):
        with pytest.raises(UserError, match="--features"):
            parse_features(bad)


def test_a_new_entry_replaces_the_one_of_the_same_readout_features_and_targets():
    paper = {"readout": "paper", "features": "counts", "targets": "soft", "test_acc_at_best": 0.5}
    ridge = {"readout": "ridge", "features": "counts", "targets": "onehot", "test_acc_at_best": 0.6}
    entries = merge_entry(merge_entry([ridge], paper), dict(ridge, features="bins"))
    assert [(e["readout"], e["features"]) for e in entries] == [("paper", "counts"), ("ridge", "bins"),
                                                                 ("ridge", "counts")]
    again = merge_entry(entries, dict(ridge, test_acc_at_best=0.7))
    assert len(again) == 3 and [e["test_acc_at_best"] for e in again if e["features"] == "counts"] == [0.5, 0.7]


def test_the_readout_command_adds_a_ridge_readout_beside_the_papers(run, capsys):
    root, folder = run
    summary = json.loads((folder / "summary.json").read_text())
    paper = summary["readouts"]
    assert [(e["readout"], e["features"], e["targets"]) for e in paper] == [("paper", "counts", "soft")]
    assert paper[0]["test_acc_at_best"] == summary["test_acc_at_best"] and paper[0]["file"] == "readout.npz"
    assert readout_command(["1", "--output-root", str(root / "runs")]) == 0
    assert "ridge readout on counts (27 features, onehot targets): test accuracy" in capsys.readouterr().out
    summary = json.loads((folder / "summary.json").read_text())
    ridge = summary["readouts"][1]
    assert summary["readouts"][0] == paper[0]
    assert ridge["readout"] == "ridge" and ridge["file"] == "readout_ridge_counts.npz" and ridge["n_features"] == 27
    assert 0.0 <= ridge["test_acc_at_best"] <= 1.0 and ridge["seconds"] >= 0
    arrays = np.load(folder / "readout_ridge_counts.npz")
    assert arrays["weights"].shape == (27, 10) and arrays["valid_accs"][arrays["chosen"]] == ridge["best_valid_acc"]
    assert {"readout_ridge_counts.npz", "summary.json"} <= set(Manifest(folder / "manifest.json").entries)
    from lsm_core.analysis.report import collect_run, format_runs
    record = collect_run(1, root / "runs")
    assert record.readouts == {"ridge:counts": ridge["test_acc_at_best"]}
    table = format_runs([record])
    assert "ridge:counts%" in table.splitlines()[0] and f"{100 * ridge['test_acc_at_best']:.2f}" in table
    assert "test_acc_ridge_counts" in format_runs([record], "csv").splitlines()[0]
    # the run written again (a re-run of its script) keeps the added readout
    run_quietly(tiny_config(root))
    assert json.loads((folder / "summary.json").read_text())["readouts"] == summary["readouts"]


def test_bins_of_a_run_without_time_bins_and_an_unfinished_run_are_refused(run):
    root, folder = run
    with pytest.raises(UserError, match="stored 1 time bin.*--count-bins 2"):
        readout_command(["1", "--output-root", str(root / "runs"), "--features", "bins:2"])
    (folder / "summary.json").unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]["summary.json"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="has not finished"):
        readout_command(["1", "--output-root", str(root / "runs")])


def test_the_command_line(run):
    root, folder = run
    result = subprocess.run([sys.executable, "-m", "lsm_core", "readout", "1", "--output-root", str(root / "runs"),
                             "--targets", "soft"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "soft targets" in result.stdout and (folder / "readout_ridge_counts_soft.npz").exists()
    missing = subprocess.run([sys.executable, "-m", "lsm_core", "readout", "7", "--output-root", str(root / "runs")],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr and "no run VERSION 7" in missing.stderr


def test_time_binned_features_of_a_run_with_count_bins(tmp_path):
    from dataclasses import replace
    config = replace(tiny_config(tmp_path), count_bins=4)
    run_quietly(config)
    root = str(tmp_path / "runs")
    for features, n_features, name in (("bins", 108, "readout_ridge_bins.npz"), ("bins:2", 54, "readout_ridge_bins2.npz"),
                                       ("counts", 27, "readout_ridge_counts.npz")):
        assert readout_command(["1", "--output-root", root, "--features", features]) == 0
        entry = [e for e in json.loads((tmp_path / "runs" / "ver_1" / "summary.json").read_text())["readouts"]
                 if e["features"] == features and e["readout"] == "ridge"][0]
        assert entry["n_features"] == n_features and entry["file"] == name
    with pytest.raises(UserError, match="--count-bins 3"):
        readout_command(["1", "--output-root", root, "--features", "bins:3"])
    # the paper's readout again, on the bins: its own entry; on the counts it is the run's own
    assert readout_command(["1", "--output-root", root, "--readout", "paper", "--features", "bins", "--epochs", "4"]) == 0
    summary = json.loads((tmp_path / "runs" / "ver_1" / "summary.json").read_text())
    paper = {e["features"]: e for e in summary["readouts"] if e["readout"] == "paper"}
    assert set(paper) == {"counts", "bins"} and paper["bins"]["targets"] == "soft"
    assert paper["bins"]["epochs"] == 4 and 1 <= paper["bins"]["best_epoch"] <= 4 and paper["bins"]["n_features"] == 108
    arrays = np.load(tmp_path / "runs" / "ver_1" / "readout_paper_bins.npz")
    assert arrays["best_weights"].shape == (108, 10) and arrays["history"].shape == (4, 6)
    assert arrays["history"][paper["bins"]["best_epoch"] - 1, 5] == paper["bins"]["test_acc_at_best"]
    from lsm_core.analysis.report import collect_run
    assert set(collect_run(1, root).readouts) == {"ridge:bins", "ridge:bins:2", "ridge:counts", "paper:bins"}
    with pytest.raises(UserError, match="trained the paper's readout on the counts itself"):
        readout_command(["1", "--output-root", root, "--readout", "paper"])
