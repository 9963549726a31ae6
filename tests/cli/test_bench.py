"""`python -m lsm_core bench` prints the JSON record of docs/file-formats.md#the-bench-record (a tiny
liquid: this is no timing test)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_bench_json_record():
    result = subprocess.run([sys.executable, "-m", "lsm_core", "bench", "--dims", "3x3x3", "--batch", "4",
                             "--steps", "20", "--repeats", "1", "--json"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("rule", "phase", "dims", "batch", "steps", "n_syn", "compile_s", "wall_s", "sample_ms_per_s",
                "device"):
        assert key in record
    assert record["dims"] == "3x3x3" and record["batch"] == 4 and record["steps"] == 20
    assert record["sample_ms_per_s"] > 0 and record["device"].startswith("CPU")
    assert record["engine"] == "events"                 # auto on a machine without a GPU


def test_bench_plastic_rule_in_the_init_phase():
    from lsm_core.cli.bench import run_bench

    record = run_bench("nalsm", "init", (3, 3, 3), batch=3, steps=10, repeats=1)
    assert record["phase"] == "init" and record["weight_scale"] == 3.0 and record["sample_ms_per_s"] > 0


def test_unknown_command_and_impossible_bench_are_clear_errors():
    result = subprocess.run([sys.executable, "-m", "lsm_core", "nonsense"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "unknown command" in result.stderr
    result = subprocess.run([sys.executable, "-m", "lsm_core", "bench", "--rule", "static", "--phase", "init"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "no init phase" in result.stderr and "Traceback" not in result.stderr


def test_bench_all_measures_every_case_on_every_engine_and_the_readout():
    from lsm_core.cli.bench import TABLE_HEADER, _row, bench_all

    lines = []
    records = bench_all(("xla", "events"), repeats=1, seed=1, log=lines.append,
                        cases=(("static", "sample", 2, 10), ("nalsm", "init", 3, 5)), dims=(2, 2, 2),
                        readout_sizes=dict(n_features=8, n_train=40, n_valid=10, n_test=10, batch_size=10, epochs=2))
    assert [(r["rule"], r["phase"], r["engine"]) for r in records] == [
        ("static", "sample", "xla"), ("static", "sample", "events"), ("nalsm", "init", "xla"),
        ("nalsm", "init", "events"), ("readout", "epoch", "xla")]
    assert records[0]["mean_rate_hz"] == records[1]["mean_rate_hz"]      # the same dynamics on both engines
    assert records[-1]["per_epoch_s"] > 0 and len(lines) == 5
    assert "steps/s" in _row(records[2]) and "s/epoch" in lines[-1] and "engine" in TABLE_HEADER


def test_bench_inputs_from_a_damaged_mnist_file_are_an_error_not_random_numbers(tmp_path, monkeypatch):
    from lsm_core.cli.bench import bench_inputs
    from lsm_core.errors import UserError

    monkeypatch.setenv("LSM_CORE_DATA_DIR", str(tmp_path))
    inputs = bench_inputs(784, batch=2, steps=10, seed=1)                 # no mnist.npz: random probabilities
    assert inputs.shape == (2, 784) and inputs.max() <= 0.2
    path = tmp_path / "mnist.npz"
    path.write_bytes(bytes(1000))
    with pytest.raises(UserError) as info:
        bench_inputs(784, batch=2, steps=10, seed=1)
    assert str(path) in str(info.value) and "datasets fetch mnist" in str(info.value)


def test_bench_under_load_compares_default_threads_with_one_while_a_hog_spins_and_stops_it():
    from lsm_core.cli.bench import LOAD_HEADER, _load_row, bench_under_load, cpu_hog

    with cpu_hog() as hog:
        assert hog.poll() is None                       # spinning
    assert hog.poll() is not None                       # and gone afterwards
    records = bench_under_load([("nalsm", "init", 4, 10)], (3, 3, 3), rounds=2, seed=1, log=lambda line: None)
    (record,) = records
    assert record["rounds"] == 2 and record["hog_cores"] == 1 and record["default_threads"] >= 1
    for name in ("default", "one_thread"):
        assert record[f"{name}_sample_ms_per_s"] > 0
    assert record["default_over_one_thread"] == pytest.approx(
        record["one_thread_wall_s"] / record["default_wall_s"], rel=1e-2)
    assert len(_load_row(record).split()) >= 7 and "default" in LOAD_HEADER


def test_bench_under_load_refuses_the_xla_engine_clearly():
    result = subprocess.run([sys.executable, "-m", "lsm_core", "bench", "--under-load", "--engine", "xla"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--under-load" in result.stderr and "Traceback" not in result.stderr
