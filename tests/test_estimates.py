"""The run-time estimates in the sweep files and the README are written from benchmarks/estimates.json by
benchmarks/estimates.py, never typed: they must be what the script writes now."""
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def estimates():
    spec = importlib.util.spec_from_file_location("estimates", REPO / "benchmarks" / "estimates.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_sweep_files_and_the_readme_say_what_the_stored_measurement_gives(estimates, capsys):
    assert estimates.write(check=True) == 0, capsys.readouterr().out


def test_a_measured_run_is_preferred_to_the_bench_figures(estimates):
    from lsm_core.runs.sweep import load_sweep

    store = json.loads((REPO / "benchmarks" / "estimates.json").read_text())
    config = load_sweep(REPO / "sweeps" / "paper-nalsm-mnist.toml").runs[0].config()
    bench_phases, source = estimates.phase_seconds(config, {**store, "runs": []})
    assert source == "bench" and bench_phases["spike_counts"] > 0 and bench_phases["readout"] > 0
    run = {**estimates.run_key(config), "phases": {"init": 1.0, "spike_counts": 2.0, "readout": 3.0}}
    measured, source = estimates.phase_seconds(config, {**store, "runs": [run, {**run, "phases": {
        "init": 3.0, "spike_counts": 4.0, "readout": 5.0}}]})
    assert source == "measured" and measured == {"init": 2.0, "spike_counts": 3.0, "readout": 4.0}


def test_durations_read_as_people_write_them(estimates):
    assert [estimates.duration(s) for s in (40, 384, 3000, 7500, 90000)] == \
        ["40 s", "6.4 min", "50 min", "2 h 5 min", "25 h"]
